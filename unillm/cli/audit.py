"""``unillm audit tail``: the gateway's admin changes (the ``unillm_audit`` table), newest last."""

from __future__ import annotations

import functools
import json
import time

import click

from ._common import State, guard, state_options, table


@click.group("audit")
def group() -> None:
    """Read the audit log of admin changes made through `unillm serve`.

    The log lives in the ledger of the config `unillm serve` uses: run both with the same
    --config (or --ledger), or from the directory holding unillm.toml.
    """


def _line(row: dict[str, object]) -> dict[str, object]:
    return {**row, "before": json.dumps(row["before"]) if row["before"] is not None else "",
            "after": json.dumps(row["after"]) if row["after"] is not None else ""}


@group.command("tail")
@state_options()
@click.option("-n", "--lines", default=20, type=click.IntRange(1, 1000), show_default=True,
              help="how many of the newest changes to show")
@click.option("--follow", "-f", is_flag=True, help="keep printing new changes (every second)")
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]),
              help="json: one object per line")
def tail(state: State, lines: int, follow: bool, fmt: str) -> None:
    """The newest admin changes, oldest first: when, who (key id), action, object, before/after."""
    from ..server import audit
    state.say()
    store = state.open_ledger(create=True)
    rows = [r.public() for r in reversed(guard(lambda: audit.rows(store, limit=lines)))]

    def show(found: list[dict[str, object]], header: bool) -> None:
        if fmt == "json":
            for r in found:
                click.echo(json.dumps(r))
        elif found:
            text = table([_line(r) for r in found], ["id", "at", "actor", "action", "object", "before", "after"])
            click.echo(text if header else "\n".join(text.splitlines()[2:]))
    if not rows and fmt == "table" and not follow:
        click.echo("no admin changes recorded")
    show(rows, True)
    cursor = int(str(rows[-1]["id"])) if rows else 0
    while follow:
        time.sleep(1.0)
        new = [r.public() for r in reversed(guard(functools.partial(audit.rows, store, limit=1000,
                                                                     after=cursor)))]
        if new:
            show(new, False)
            cursor = int(str(new[-1]["id"]))
