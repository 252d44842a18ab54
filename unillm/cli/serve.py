"""``unillm serve``: the OpenAI-compatible gateway on uvicorn (``pip install 'unillm[server]'``)."""

from __future__ import annotations

import click

from .. import errors
from ._common import State, state_options


@click.command("serve")
@state_options(cache=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(min=1),
              help="processes sharing the port (rate limits are then per process)")
@click.option("--access-log/--no-access-log", default=False, show_default=True,
              help="one log line per request (costs latency)")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def group(state: State, host: str, port: int, workers: int, access_log: bool, log_level: str) -> None:
    """Serve /v1/chat/completions, usage ingest, analytics and /dashboard.

    Providers, ledger (which also holds the keys of `unillm keys`), budgets, rules and
    cache come from the config, found as every unillm command finds it.
    """
    try:
        from ..server.run import AppFactory, serve
    except ImportError as exc:
        raise click.ClickException(f"{exc.name} is not installed; run: pip install 'unillm[server]'") from exc
    for line in state.describe(cache=True):  # a server always says what it serves from
        click.echo(line, err=True)
    config = str(state.config) if state.config else None
    factory = AppFactory(config, state.overrides())
    try:
        app = factory()  # also validates the config before any worker starts
    except ImportError as exc:
        raise click.ClickException(f"{exc.name} is not installed; run: pip install 'unillm[server]'") from exc
    except errors.UnillmError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"unillm gateway on http://{host}:{port}  (dashboard: /dashboard?key=ADMIN_KEY)", err=True)
    serve(factory if workers > 1 else app, host=host, port=port, workers=workers,
          log_level=log_level, access_log=access_log)
