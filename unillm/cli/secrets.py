"""``unillm secrets set|list|delete|keygen``: provider API keys sealed in the ledger database."""

from __future__ import annotations

import json
import os

import click

from ._common import State, guard, state_options, table


def _sealed(state: State) -> object:
    """The sealed keys of the ledger `unillm serve` with the same config reads."""
    from ..sealed import SealedKeys, master_key
    state.say()
    client = state.client()
    store = guard(lambda: client.ledger.store)
    key = guard(lambda: master_key(client.settings))
    return SealedKeys(store, key, source=client.settings.source)


@click.group("secrets")
def group() -> None:
    """Seal provider API keys (encrypted with Fernet) in the ledger's database.

    The master key comes from UNILLM_MASTER_KEY, else the file named by master_key_file in
    unillm.toml. A provider's api_key / api_key_env in the config wins over its sealed key.
    """


@group.command("set")
@state_options()
@click.argument("provider")
@click.option("--from-env", "from_env", default=None, metavar="VAR",
              help="read the key from environment variable VAR instead of prompting")
def set_key(state: State, provider: str, from_env: str | None) -> None:
    """Seal PROVIDER's API key (prompted, never echoed). Replaces any earlier one."""
    sealed = _sealed(state)
    client = state.client()
    if provider not in client.providers:
        raise click.ClickException(f"unknown provider {provider!r}; known: {', '.join(sorted(client.providers))}")
    if from_env is not None:
        secret = os.environ.get(from_env, "")
        if not secret.strip():
            raise click.ClickException(f"the environment variable {from_env} is not set or empty")
    else:
        secret = click.prompt(f"{provider} API key", hide_input=True)
    guard(lambda: sealed.set(provider, secret, actor="cli"))  # type: ignore[attr-defined]
    click.echo(f"sealed the {provider} key; running gateways use it within 30 seconds")


@group.command("list")
@state_options()
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]))
def list_keys(state: State, fmt: str) -> None:
    """The providers with a sealed key, and when each was set (never a key)."""
    rows = guard(lambda: _sealed(state).list())  # type: ignore[attr-defined]
    if fmt == "json":
        click.echo(json.dumps(rows))
        return
    click.echo(table(rows, ["provider", "set_at"]) if rows else "no sealed keys")


@group.command("delete")
@state_options()
@click.argument("provider")
def delete(state: State, provider: str) -> None:
    """Delete PROVIDER's sealed key."""
    if not guard(lambda: _sealed(state).delete(provider, actor="cli")):  # type: ignore[attr-defined]
        raise click.ClickException(f"no sealed key for {provider!r} (see `unillm secrets list`)")
    click.echo(f"deleted the sealed {provider} key")


@group.command("keygen")
def keygen() -> None:
    """Print a new random master key (for UNILLM_MASTER_KEY or a master_key_file)."""
    from ..sealed import generate_master_key
    click.echo(guard(generate_master_key))
