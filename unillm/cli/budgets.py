"""``unillm budgets status``: spent, reserved, remaining and reset time per budget and scope;
``unillm budgets reconcile``: count the holds of calls whose process died."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from .. import errors
from ._common import FORMAT_OPTION, State, guard, show_rows, state_options, usd


@click.group()
def group() -> None:
    """Budgets from unillm.toml, read from the ledger they are kept in."""


@group.command()
@state_options()
@FORMAT_OPTION
def status(state: State, fmt: str) -> None:
    """Where every budget stands now (budgets are declared in the config)."""
    state.say()
    client = state.client()
    rows = guard(client.budgets.status)
    show_rows(rows, fmt, empty="no budgets configured" if not client.budgets.specs else "no spend recorded yet",
              render=_table)


@group.command()
@state_options()
def reconcile(state: State) -> None:
    """Settle lapsed holds: calls whose process died are counted at their worst case, and
    their `in_flight` ledger rows become `unknown` (any admission or status does the same
    for the budgets it touches)."""
    state.say()
    try:
        n = state.client().budgets.reconcile()
    except errors.UnillmError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{n} lapsed call{'s' if n != 1 else ''} counted at worst case" if n else "no lapsed holds")


def _table(rows: Sequence[dict[str, Any]]) -> str:
    header = ("budget", "scope", "period", "spent", "reserved", "limit", "remaining", "used", "resets")
    table = [header] + [(
        r["budget"], ",".join(f"{k}={v}" for k, v in r["scope"].items()) or "global", r["period"],
        usd(r["spent_usd"]), usd(r["reserved_usd"]),
        usd(r["limit_usd"]) if "limit_usd" in r else _other_limit(r),
        usd(r["remaining_usd"]) if "remaining_usd" in r else "-", f"{r['used']:.0%}",
        r["resets_at"] or "never") for r in rows]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(header))]
    return "\n".join("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table)


def _other_limit(row: dict[str, Any]) -> str:
    if "limit_tokens" in row:
        return f"{row['tokens']}/{row['limit_tokens']} tokens"
    return f"{row['requests']}/{row['limit_requests']} calls"
