"""``unillm ledger``: summary, export, tail, whatif, migrate.

Every command finds its config and ledger as all ``unillm`` commands do (see `_common`):
``--config``, else ``$UNILLM_CONFIG``, else ``./unillm.toml``; the ledger is ``--ledger``,
else the config's, else ``$UNILLM_LEDGER``, else the default file. ``-v`` says which.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

import click

from ..ledger import export as exporter
from ..ledger.facade import Ledger
from ..ledger.records import CallRecord
from ..ledger.stores import open_store
from ._common import (
    FORMAT_OPTION,
    WHERE_OPTION,
    FilePath,
    State,
    check_dimension,
    dimensions,
    guard,
    plural,
    pricebook,
    state_options,
    table,
    usd,
    where_pairs,
)

_SINCE = click.option("--since", default=None, help="e.g. 7d, 24h, 2w, 2025-01-31")
_UNTIL = click.option("--until", default=None, help="e.g. 1d, 2025-02-01")


@click.group()
def group() -> None:
    """Read the ledger: what was called, what it cost."""


def _by(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    return [check_dimension(k, "--by") for k in value.split(",") if k.strip()]


@group.command()
@click.option("--by", default="model", show_default=True, callback=_by,
              help=f"comma-separated dimensions: {', '.join(dimensions())}, or tag:NAME")
@_SINCE
@_UNTIL
@WHERE_OPTION
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@click.option("--retries/--no-retries", default=True, show_default=True,
              help="count the HTTP attempts that were retried (the vendor may bill them)")
@click.option("--rollup", is_flag=True, help="with --by section: each section counts its subsections")
@state_options()
def summary(by: list[str], since: str | None, until: str | None, where: tuple[str, ...], fmt: str,
            retries: bool, rollup: bool, state: State) -> None:
    """Calls, errors, tokens, cost (USD) and latency (ms) per group."""
    state.say()
    filters = where_pairs(where)
    ledger = Ledger(state.open_ledger())
    rows = guard(lambda: ledger.summary(by=by, since=since, until=until, where=filters, retries=retries,
                                        rollup=rollup))
    if fmt == "table":
        cols = [*by, "calls", "errors", "cache_hits", "input_tokens", "output_tokens",
                "cost_usd", "saved_usd", "p50_latency_ms", "p95_latency_ms"]
        click.echo(table(rows, cols) if rows else "no calls recorded in that range")
    else:
        exporter.write(fmt, rows, sys.stdout)


@group.command(name="export")
@click.option("--format", "fmt", type=click.Choice(list(exporter.FORMATS)), default="csv",
              show_default=True)
@click.option("-o", "--output", required=True, type=FilePath(dir_okay=False),
              help="file to write ('-' for standard output; not for parquet)")
@_SINCE
@_UNTIL
@WHERE_OPTION
@state_options()
def export_cmd(fmt: str, output: str, since: str | None, until: str | None,
               where: tuple[str, ...], state: State) -> None:
    """Write the records themselves (every field) to a file."""
    if output == "-" and fmt == "parquet":
        raise click.ClickException("parquet needs a file: -o FILE.parquet")
    state.say()
    filters = where_pairs(where)
    ledger = Ledger(state.open_ledger())
    target: Any = sys.stdout if output == "-" else output
    n = guard(lambda: ledger.export(fmt, target, since=since, until=until, where=filters))
    if output != "-":
        click.echo(f"wrote {plural(n, 'record')} to {output}", err=True)


@group.command()
@click.option("-n", "count", default=10, show_default=True, help="how many recent records first")
@click.option("-f", "--follow", is_flag=True, help="keep printing new records as they arrive")
@click.option("--interval", default=1.0, show_default=True, help="seconds between polls")
@click.option("--max-polls", default=None, type=int, hidden=True)
@state_options()
def tail(count: int, follow: bool, interval: float, max_polls: int | None, state: State) -> None:
    """Print the most recent records, as JSON lines."""
    state.say()
    store = state.open_ledger()
    last = store.last_cursor()
    recent, cursor = store.tail(max(last - count, 0), count)
    _print(recent)
    polls = 0
    while follow and (max_polls is None or polls < max_polls):
        time.sleep(interval)
        polls += 1
        recs, cursor = store.tail(cursor)
        _print(recs)


def _print(recs: list[Any]) -> None:
    for rec in recs:
        click.echo(json.dumps(exporter.record_dict(rec), ensure_ascii=False))
    sys.stdout.flush()


@group.command()
@click.option("--model", required=True,
              help="the model to compare with, named as in chat(): gpt-4o-mini, an alias, openai/gpt-4o-mini")
@click.option("--provider", default=None, help="its provider, when the name alone does not say")
@click.option("--pricing", default=None, type=FilePath(dir_okay=False),
              help="a price file merged over the bundled one (default: the config's pricing)")
@_SINCE
@_UNTIL
@WHERE_OPTION
@FORMAT_OPTION
@state_options()
def whatif(model: str, provider: str | None, pricing: str | None, since: str | None,
           until: str | None, where: tuple[str, ...], fmt: str, state: State) -> None:
    """What the recorded calls would have cost on another model."""
    state.say()
    filters = where_pairs(where)
    client = state.client()
    from ..adapters.cloud import price_tables
    book = pricebook(pricing).priced_as(price_tables(client.settings.providers)) if pricing \
        else guard(lambda: client.pricebook)
    ledger = Ledger(state.open_ledger(), book, resolver=client.resolve)
    result = guard(lambda: ledger.whatif(model, provider=provider, since=since, until=until,
                                         where=filters))
    if fmt == "json":
        body = {k: exporter.plain(v) for k, v in vars(result).items() if k != "rows"}
        body["rows"] = [{k: exporter.plain(v) for k, v in r.items()} for r in result.rows]
        click.echo(json.dumps(body, indent=2))
        return
    cols = ["provider", "model", "calls", "original_usd", "hypothetical_usd", "difference_usd"]
    click.echo(table(result.rows, cols) if result.rows else "no priced calls in that range")
    diff = result.difference_usd
    verdict = "cost the same" if diff == 0 else \
        f"{'save' if diff < 0 else 'cost an extra'} {usd(abs(diff))}"
    click.echo(f"\non {result.provider}/{result.model}: {plural(result.calls, 'call')} would "
               f"{verdict} ({usd(result.original_usd)} -> {usd(result.hypothetical_usd)})"
               + (f"; {plural(result.unpriced_calls, 'unpriced call')} left out"
                  if result.unpriced_calls else ""))


# ── migrate ──────────────────────────────────────────────────────────────────

_BATCH = 1000


@group.command()
@click.option("--to", "to_url", required=True, metavar="URL",
              help="the ledger to copy into, e.g. postgresql://user@host:5432/unillm")
@click.option("--from", "from_url", default=None, metavar="URL",
              help="the ledger to copy from (default: the config's ledger, else $UNILLM_LEDGER, "
                   "else the default ledger file)")
@state_options(ledger=False)
def migrate(to_url: str, from_url: str | None, state: State) -> None:
    """Copy every record into another ledger (SQLite -> PostgreSQL), checked, safe to re-run.

    Each batch is read back from the target and compared field by field; the row
    count and the exact cost sum of both sides are printed at the end.
    """
    state.ledger_option, state.ledger_flag = from_url, "--from"
    state.say()
    source = state.open_ledger()
    target = guard(lambda: open_store(to_url))
    if source.url == target.url:
        raise click.ClickException("--from and --to name the same ledger")
    expected = sum(r["calls"] for r in source.summary())
    copied = checked = 0
    source_cost = target_cost = Decimal(0)
    with click.progressbar(length=expected, label="copying", file=sys.stderr) as bar:
        for batch in _batches(source.records(), _BATCH):
            copied += guard(functools.partial(target.copy_in, batch))
            back = guard(functools.partial(target.by_ids, [r.id for r in batch]))
            for rec in batch:
                if back.get(rec.id) != rec:
                    raise click.ClickException(
                        f"record {rec.id} differs in {target.url}: the target already held "
                        "another record with that id, or could not store it exactly")
            checked += len(batch)
            source_cost += _cost(batch)
            target_cost += _cost(back.values())
            bar.update(len(batch))
    click.echo(f"copied {plural(copied, 'new record')} from {source.url} to {target.url} "
               f"({checked - copied} already there)")
    click.echo(f"checked: {plural(checked, 'record')} in both, cost {usd(source_cost)} in source, "
               f"{usd(target_cost)} in target")
    if checked < expected or source_cost != target_cost:
        raise click.ClickException(f"mismatch: {plural(expected, 'record')} in the source, {checked} "
                                   "checked in the target")
    source.close()
    target.close()


def _batches(recs: Iterable[CallRecord], size: int) -> Iterator[list[CallRecord]]:
    batch: list[CallRecord] = []
    for rec in recs:
        batch.append(rec)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _cost(recs: Iterable[CallRecord]) -> Decimal:
    return sum((r.total_usd for r in recs if r.total_usd is not None), Decimal(0))


__all__ = ["group"]
