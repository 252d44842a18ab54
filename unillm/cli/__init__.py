"""The ``unillm`` command. Sub-groups live one per module and are loaded when used."""

from __future__ import annotations

import importlib
import os
import sys
import traceback

import click

from .. import errors

# group name -> module defining a click group named `group`
_GROUPS = {
    "pricing": "unillm.cli.pricing",
    "ledger": "unillm.cli.ledger",
    "rules": "unillm.cli.rules",
    "cache": "unillm.cli.cache",
    "budgets": "unillm.cli.budgets",
    "serve": "unillm.cli.serve",
    "keys": "unillm.cli.keys",
    "report": "unillm.cli.report",
    "secrets": "unillm.cli.secrets",
    "audit": "unillm.cli.audit",
    "routes": "unillm.cli.routes",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(_GROUPS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in _GROUPS:
            try:
                group: click.Command = importlib.import_module(_GROUPS[name]).group
                return group
            except ModuleNotFoundError:
                return None
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup)
@click.version_option(package_name="unillm")
def cli() -> None:
    """unillm: one client for many LLM vendors, with costs you can trust."""


def main() -> None:
    """Entry point: user errors are one clean line; UNILLM_DEBUG=1 shows the traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        cause = exc.__cause__ or exc.__context__
        if os.environ.get("UNILLM_DEBUG") and cause is not None:
            traceback.print_exception(type(cause), cause, cause.__traceback__)
        exc.show()
        sys.exit(exc.exit_code)
    except errors.UnillmError as exc:
        if os.environ.get("UNILLM_DEBUG"):
            raise
        click.echo(f"Error: {exc}", err=True)
        sys.exit(1)
