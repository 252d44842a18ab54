"""``unillm report --since 30d -o report.html``: the dashboard as one self-contained file."""

from __future__ import annotations

import click

from .ledger import _guard, _where
from ._common import load_client


@click.command("report")
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None, help="unillm.toml")
@click.option("--ledger", envvar="UNILLM_LEDGER", default=None, metavar="URL", help="sqlite:///PATH.db")
@click.option("--since", default="30d", show_default=True, help="e.g. 7d, 2025-01-01, or 'all'")
@click.option("--until", default=None, help="e.g. 1d, 2025-02-01 (default: now)")
@click.option("--where", "where", multiple=True, metavar="KEY=VALUE", help="filter, e.g. project=bot")
@click.option("--title", default="spend report", show_default=True)
@click.option("-o", "--output", default="report.html", show_default=True, type=click.Path(dir_okay=False))
def group(config: str | None, ledger: str | None, since: str, until: str | None, where: tuple[str, ...],
          title: str, output: str) -> None:
    """Write spend charts, breakdowns, budgets and recent calls to one HTML file."""
    from ..server.report import write_report  # needs no web server, only the ledger
    client = load_client(config, ledger)
    path = _guard(lambda: write_report(client, output, since=since, until=until, where=_where(where),
                                       title=title))
    click.echo(f"wrote {path}")
