"""``unillm cache``: how big the response cache is, what it saved, and emptying it.

The config, cache and ledger are found as every ``unillm`` command finds them (see
`_common`): the cache is ``--cache``, else the config's ``cache``, else ``$UNILLM_CACHE``,
else the default disk cache (``$UNILLM_HOME/cache`` or the user cache dir).

Hit rate and money saved live in the ledger (a hit is a ``cache_hit`` row with
``saved``), not in the cache. ``stats`` asks a *ledger stats source* for them: a
callable ``(ledger_url | None) -> {"calls", "hits", "saved_usd"} | None`` taken
from ``ctx.obj["ledger_stats"]`` when the caller provides one (tests, embedding
apps), else `ledger_cache_stats` below, which reads the ledger.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import click

from .. import errors
from ..cache import default_cache_url, open_cache
from ..cache.base import CacheBackend
from ..cache.stats import skip_reasons, status_counts
from ._common import FORMAT_OPTION, State, plural, state_options, usd, user_errors

LedgerStats = Callable[[str | None], Mapping[str, Any] | None]


def ledger_cache_stats(ledger_url: str | None) -> Mapping[str, Any] | None:
    """Calls, cache hits and money saved by the cache, from the ledger at ``ledger_url``
    (None = the default ledger); None when there is no ledger to read."""
    from ..ledger import open_store
    ledger_url = ledger_url or os.environ.get("UNILLM_LEDGER")
    if ledger_url == "off":
        return None
    try:
        store = open_store(ledger_url, create=False)
    except errors.ConfigError:
        return None  # no ledger yet: no hit rate to show
    try:
        rows = store.summary(by=["status"])
        statuses = status_counts(store)
    finally:
        store.close()
    calls = sum(r["calls"] for r in rows)
    if not calls:
        return None  # nothing recorded: a hit rate would be meaningless
    hits = sum(r["calls"] for r in rows if r["status"] == "cache_hit")
    saved = sum((r["saved_usd"] for r in rows if r["status"] == "cache_hit"), Decimal(0))
    return {"calls": calls, "hits": hits, "saved_usd": saved, "cache_status": statuses}


def _run(backend: CacheBackend, op: Callable[[], Any]) -> Any:
    """Run a backend operation; storage trouble is one clean line, the backend is closed."""
    try:
        return op()
    except (errors.UnillmError, click.ClickException):
        raise
    except Exception as exc:
        if os.environ.get("UNILLM_DEBUG"):
            raise
        where = getattr(backend, "url", "cache")
        raise click.ClickException(f"{where}: {type(exc).__name__}: {exc}") from exc
    finally:
        backend.close()


def _open(url: str | None) -> CacheBackend:
    messages: list[str] = []
    backend = open_cache(url or default_cache_url(), warn=messages.append)
    for m in messages:
        click.echo(f"warning: {m}", err=True)
    return backend


def _human(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"  # pragma: no cover


@click.group()
def group() -> None:
    """Response cache: size, hit rate and savings; clear a namespace; prune expired entries."""


@group.command()
@state_options(cache=True)
@FORMAT_OPTION
@click.pass_context
@user_errors
def stats(ctx: click.Context, state: State, fmt: str) -> None:
    """Entries and size on disk; hit rate and money saved when the ledger knows them."""
    state.say(cache=True)
    backend = _open(state.cache_url)
    data = dict(_run(backend, backend.stats))
    source: LedgerStats = (ctx.obj or {}).get("ledger_stats", ledger_cache_stats)
    data.update(_hits(source(state.ledger_url)))
    if fmt == "json":
        click.echo(json.dumps(data, indent=2, default=str))
        return
    rows = [("cache", data.get("url", "")), ("entries", data["entries"]),
            ("size", _human(int(data["size_bytes"])))]
    if data.get("size_limit"):
        rows.append(("size limit", _human(int(data["size_limit"]))))
    if "hit_rate" in data:
        rows += [("hit rate", f"{data['hit_rate']:.1%} ({data['hits']} of {plural(data['calls'], 'call')})"),
                 ("saved", usd(data["saved_usd"]))]
    else:
        rows.append(("hit rate", "n/a (no ledger stats)"))
    skips = skip_reasons(data.get("cache_status") or {})
    if skips:
        rows.append(("skipped", ", ".join(f"{n} {why}" for why, n in skips.items())))
    if data.get("degraded"):
        rows.append(("degraded", data["degraded"]))
    width = max(len(k) for k, _ in rows)
    for k, v in rows:
        click.echo(f"{k.ljust(width)}  {v}")


def _hits(ledger: Mapping[str, Any] | None) -> dict[str, Any]:
    if not ledger:
        return {}
    calls, hits = int(ledger.get("calls", 0)), int(ledger.get("hits", 0))
    return {"calls": calls, "hits": hits, "hit_rate": hits / calls if calls else 0.0,
            "saved_usd": Decimal(str(ledger.get("saved_usd", 0))),
            "cache_status": dict(ledger.get("cache_status") or {})}


@group.command()
@state_options(ledger=False, cache=True)
@click.option("--namespace", metavar="NS", help="only this namespace (default: everything)")
@user_errors
def clear(state: State, namespace: str | None) -> None:
    """Remove cached answers (all, or one namespace's)."""
    state.say(ledger=False, cache=True)
    backend = _open(state.cache_url)
    n = _run(backend, lambda: backend.clear(namespace))
    where = f" from namespace {namespace!r}" if namespace else ""
    click.echo(f"removed {plural(n, 'entry', 'entries')}{where}")


@group.command()
@state_options(ledger=False, cache=True)
@user_errors
def prune(state: State) -> None:
    """Remove expired entries."""
    state.say(ledger=False, cache=True)
    backend = _open(state.cache_url)
    n = _run(backend, backend.prune)
    click.echo(f"pruned {plural(n, 'expired entry', 'expired entries')}")
