"""What every ``unillm`` sub-command shares."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import click

from .. import errors


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """unillm errors become one clean line (ClickException); `main` shows the cause with UNILLM_DEBUG=1."""
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except errors.UnillmError as exc:
            raise click.ClickException(str(exc)) from exc
    return wrapper


def load_client(config: str | None, ledger: str | None) -> Any:
    """The Client a command works with: from ``--config`` (or defaults), ``--ledger`` winning."""
    from ..client import Client
    overrides = {"ledger": ledger} if ledger else {}
    try:
        return Client.from_config(config, **overrides) if config else Client(**overrides)
    except errors.ConfigError as exc:
        raise click.ClickException(str(exc)) from exc
