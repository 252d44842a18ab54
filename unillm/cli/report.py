"""``unillm report --since 30d -o report.html``: the dashboard as one self-contained file."""

from __future__ import annotations

import click

from ._common import WHERE_OPTION, FilePath, State, guard, state_options, where_pairs


@click.command("report")
@state_options()
@click.option("--since", default="30d", show_default=True, help="e.g. 7d, 2025-01-01, or 'all'")
@click.option("--until", default=None, help="e.g. 1d, 2025-02-01 (default: now)")
@WHERE_OPTION
@click.option("--title", default="spend report", show_default=True)
@click.option("-o", "--output", default="report.html", show_default=True, type=FilePath(dir_okay=False))
def group(state: State, since: str, until: str | None, where: tuple[str, ...], title: str,
          output: str) -> None:
    """Write spend charts, breakdowns, budgets and recent calls to one HTML file."""
    from ..server.report import write_report  # needs no web server, only the ledger
    state.say()
    filters = where_pairs(where)
    state.open_ledger().close()  # a missing ledger file is an error, not a new empty one
    client = state.client()
    path = guard(lambda: write_report(client, output, since=since, until=until, where=filters,
                                      title=title))
    click.echo(f"wrote {path}")
