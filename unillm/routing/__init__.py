"""Deployments and load balancing: one model name callers use, many places that serve it.

``[[deployments]]`` (`DeploymentSpec`) and ``[routing]`` (`RoutingSettings`); `Router` picks
per call and learns from each attempt; `state` shares health across processes.
"""

from __future__ import annotations

from .router import Pick, Router
from .spec import STRATEGIES, DeploymentSpec, RoutingSettings
from .state import Health, MemoryState, RedisState, RouteState, SQLState

__all__ = ["STRATEGIES", "DeploymentSpec", "Health", "MemoryState", "Pick", "RedisState", "RouteState", "Router",
           "RoutingSettings", "SQLState"]
