"""``[[deployments]]`` and ``[routing]``: the typed settings of `unillm.routing`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Strategy = Literal["ordered", "weighted", "least-busy", "latency", "cost", "usage"]
STRATEGIES: tuple[str, ...] = ("ordered", "weighted", "least-busy", "latency", "cost", "usage")


class DeploymentSpec(BaseModel):
    """One ``[[deployments]]``: a place that serves the name callers use (``model``)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    model: str = Field(min_length=1)       # the name callers use
    provider: str = Field(min_length=1)    # a profile or a [providers.NAME] table
    model_id: str | None = None            # what that vendor is asked for (default: model)
    name: str | None = None                # its ledger value (default: "provider/model_id")
    weight: float = Field(default=1.0, gt=0)
    rpm: int | None = Field(default=None, gt=0)   # requests per minute, checked before sending
    tpm: int | None = Field(default=None, gt=0)   # tokens per minute (counted when calls end)

    @model_validator(mode="after")
    def _defaults(self) -> DeploymentSpec:
        if self.model_id is None:
            self.model_id = self.model
        if self.name is None:
            self.name = f"{self.provider}/{self.model_id}"
        return self

    @property
    def label(self) -> str:
        assert self.name is not None
        return self.name

    @property
    def vendor_model(self) -> str:
        assert self.model_id is not None
        return self.model_id


class RoutingSettings(BaseModel):
    """``[routing]``: how a deployment is chosen and when one is taken out."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    strategy: Strategy = "weighted"
    strategies: dict[str, Strategy] = Field(default_factory=dict)   # per model name
    cooldown_after: int = Field(default=3, gt=0)        # retryable failures within the window
    cooldown_window: float = Field(default=60.0, gt=0)  # seconds
    cooldown_seconds: float = Field(default=30.0, gt=0)  # out for this long, then one probe
    state: str | None = None   # "ledger" (default when on), "memory", or "redis://..."
    latency_alpha: float = Field(default=0.3, gt=0, le=1)  # EWMA weight of the newest call
    # seconds a process reuses the shared health it read (a pick that counts against a limit,
    # claims a probe or needs in-flight counts always reads it fresh); 0: read on every pick
    state_ttl: float = Field(default=1.0, ge=0)
    lease_seconds: float = Field(default=600.0, gt=0)  # an in-flight lease's life without a call deadline

    @field_validator("state")
    @classmethod
    def _state(cls, v: str | None) -> str | None:
        if v is None or v in ("ledger", "memory") or v.startswith(("redis://", "rediss://", "unix://")):
            return v
        raise ValueError('must be "ledger", "memory" or a redis:// URL')

    def strategy_for(self, model: str) -> str:
        return self.strategies.get(model, self.strategy)


def target_resolver(settings: Any, resolve: Callable[[str], Any]) -> Callable[[str], Any]:
    """``resolve``, with a ``[[deployments]]`` model name (aliases followed) leading to its
    first deployment (what a rule target check prices)."""
    from ..profiles import ModelRef
    first: dict[str, DeploymentSpec] = {}
    for d in settings.deployments:
        first.setdefault(d.model, d)

    def out(name: str) -> Any:
        seen = 0
        while name in settings.aliases and seen < 64:
            name, seen = settings.aliases[name], seen + 1
        d = first.get(name)
        if d is None:
            return resolve(name)
        return ModelRef(d.provider, d.vendor_model, settings.providers[d.provider].adapter)
    return out
