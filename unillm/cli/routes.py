"""``unillm routes status``: each ``[[deployments]]`` entry's health, load and latency, read
from the routing state shared in the ledger's database."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import click

from ._common import FORMAT_OPTION, State, guard, show_rows, state_options, table


@click.group()
def group() -> None:
    """Deployments from unillm.toml and how each is doing."""


@group.command()
@state_options()
@FORMAT_OPTION
def status(state: State, fmt: str) -> None:
    """Each deployment: healthy / cooling (until) / half-open, in flight, RPM and TPM used,
    latency EWMA, error rate."""
    state.say()
    rows = guard(lambda: state.client().route_status())
    show_rows(rows, fmt, empty="no [[deployments]] configured", render=_table)


def _table(rows: Sequence[dict[str, Any]]) -> str:
    return table([{
        "deployment": r["deployment"], "model": r["model"], "state": _state(r), "in flight": r["in_flight"],
        "rpm": f"{r['rpm_used']}/{r['rpm']}" if r["rpm"] else r["rpm_used"],
        "tpm": f"{r['tpm_used']}/{r['tpm']}" if r["tpm"] else r["tpm_used"],
        "latency ms": r["latency_ewma_ms"],
        "errors": None if r["error_rate"] is None else f"{r['error_rate']:.0%}"} for r in rows],
        ("deployment", "model", "state", "in flight", "rpm", "tpm", "latency ms", "errors"))


def _state(r: dict[str, object]) -> str:
    until = r.get("cooling_until")
    if r["state"] == "cooling" and isinstance(until, float):
        return "cooling until " + datetime.fromtimestamp(until, timezone.utc).strftime("%H:%M:%S")
    return str(r["state"])
