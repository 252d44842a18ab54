"""``unillm keys create|list|revoke``: gateway API keys, stored as hashes in the ledger database."""

from __future__ import annotations

import json

import click

from ._common import State, guard, state_options, table


def _audit(store: object, action: str, key_id: str, before: object, after: object) -> None:
    """One audit row by "cli" (`unillm.server.audit`), as the admin API writes."""
    from ..server import audit
    audit.record(store.store, "cli", action, f"key:{key_id}",  # type: ignore[attr-defined]
                 getattr(before, "public", lambda: None)(), getattr(after, "public", lambda: None)())


def _store(state: State, create: bool = True) -> object:
    """The keys live in the ledger's database: the one `unillm serve` with the same config reads."""
    from ..server.keys import KeyStore
    state.say()
    return KeyStore(state.open_ledger(create=create))


@click.group("keys")
def group() -> None:
    """Create, list and revoke the keys `unillm serve` accepts.

    Keys are stored (as hashes) in the ledger of the config `unillm serve` uses: run both
    with the same --config, or from the directory holding unillm.toml.
    """


@group.command("create")
@state_options()
@click.option("--user", default=None, help="tag user=U on every call made with the key")
@click.option("--project", default=None, help="tag project=P on every call made with the key")
@click.option("--budget-usd", default=None, help="spend limit per period, exact decimal USD")
@click.option("--period", default=None, type=click.Choice(["daily", "weekly", "monthly", "total"]),
              help="budget period (default monthly)")
@click.option("--rpm", default=None, type=click.IntRange(min=1), help="requests per minute")
@click.option("--tpm", default=None, type=click.IntRange(min=1), help="tokens per minute")
@click.option("--admin", is_flag=True, help="may manage keys and open the dashboard")
@click.option("--note", default=None, help="free text shown in listings")
@click.option("--expires-at", default=None, help="ISO 8601 date or time (UTC unless it says); refused after")
@click.option("--models", default=None, help="comma-separated model names or globs the key may call")
@click.option("--format", "fmt", default="text", type=click.Choice(["text", "json"]))
def create(state: State, fmt: str, **fields: object) -> None:
    """Create a key and print it (once: only its hash is stored)."""
    store = _store(state)
    secret, key = guard(lambda: store.create(**fields))  # type: ignore[attr-defined]
    _audit(store, "keys.create", key.id, None, key)
    if fmt == "json":
        click.echo(json.dumps({**key.public(), "key": secret}))
        return
    click.echo(secret)
    click.echo(f"{key.id} created; this is the only time the key is shown.", err=True)


@group.command("list")
@state_options()
@click.option("--all", "show_all", is_flag=True, help="include revoked keys")
@click.option("--format", "fmt", default="table", type=click.Choice(["table", "json"]))
def list_keys(state: State, show_all: bool, fmt: str) -> None:
    """List keys (id, prefix, tenancy, limits; never the key)."""
    keys = [k.public() for k in _store(state).list(show_all)]  # type: ignore[attr-defined]
    if fmt == "json":
        click.echo(json.dumps(keys))
        return
    cols = ["id", "prefix", "user", "project", "admin", "budget_usd", "period", "rpm", "tpm", "created_at",
            "expires_at", "models"]
    if show_all:
        cols.append("revoked_at")
    click.echo(table(keys, cols) if keys else "no keys")


@group.command("revoke")
@state_options()
@click.argument("key_id")
def revoke(state: State, key_id: str) -> None:
    """Revoke KEY_ID (running gateways stop accepting it within 5 seconds)."""
    store = _store(state)
    before = store.get(key_id)  # type: ignore[attr-defined]
    if not store.revoke(key_id):  # type: ignore[attr-defined]
        raise click.ClickException(f"no active key {key_id!r} (see `unillm keys list --all`)")
    _audit(store, "keys.revoke", key_id, before, store.get(key_id))  # type: ignore[attr-defined]
    click.echo(f"revoked {key_id}")


@group.command("rotate")
@state_options()
@click.argument("key_id")
@click.option("--grace", "grace", default=86_400, type=click.IntRange(min=0, max=366 * 86_400),
              help="seconds the old key keeps working (default 86400: 24 hours)")
@click.option("--format", "fmt", default="text", type=click.Choice(["text", "json"]))
def rotate(state: State, key_id: str, grace: int, fmt: str) -> None:
    """Give KEY_ID a new secret (printed once); the old one works for --grace seconds."""
    store = _store(state)
    before = store.get(key_id)  # type: ignore[attr-defined]
    done = guard(lambda: store.rotate(key_id, grace_seconds=grace))  # type: ignore[attr-defined]
    if done is None:
        raise click.ClickException(f"no active key {key_id!r} (see `unillm keys list`)")
    secret, key = done
    _audit(store, "keys.rotate", key_id, before, key)
    if fmt == "json":
        click.echo(json.dumps({**key.public(), "key": secret}))
        return
    click.echo(secret)
    click.echo(f"{key_id} rotated; the old key works until {key.old_until}. "
               "This is the only time the new key is shown.", err=True)
