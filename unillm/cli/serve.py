"""``unillm serve``: the OpenAI-compatible gateway on uvicorn (``pip install 'unillm[server]'``)."""

from __future__ import annotations

import logging
import re

import click

from .. import errors

_SECRET_QUERY = re.compile(r"([?&]key=)[^&\s\"]+")


class RedactKeys(logging.Filter):
    """Keeps ``?key=...`` (the dashboard's login) out of access logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(_SECRET_QUERY.sub(r"\1***", a) if isinstance(a, str) else a
                                for a in record.args)
        return True


def load_client(config: str | None, ledger: str | None) -> object:
    from ..client import Client
    overrides = {"ledger": ledger} if ledger else {}
    try:
        return Client.from_config(config, **overrides) if config else Client(**overrides)
    except errors.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc


@click.command("serve")
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="unillm.toml (providers, ledger, budgets, rules)")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8080, show_default=True, type=int)
@click.option("--ledger", default=None, metavar="URL", help="override the config's ledger URL")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def group(config: str | None, host: str, port: int, ledger: str | None, log_level: str) -> None:
    """Serve /v1/chat/completions, usage ingest, analytics and /dashboard."""
    try:
        import uvicorn

        from ..server.app import create_app
    except ImportError as exc:
        raise click.ClickException(f"{exc.name} is not installed; run: pip install 'unillm[server]'") from exc
    client = load_client(config, ledger)
    app = create_app(client)
    logging.getLogger("uvicorn.access").addFilter(RedactKeys())
    click.echo(f"unillm gateway on http://{host}:{port}  (dashboard: /dashboard?key=ADMIN_KEY)", err=True)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
