"""``unillm ledger``: summary, export, tail, whatif, migrate.

The ledger is ``--ledger URL``, else ``$UNILLM_LEDGER``, else the default file.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

import click

from .. import errors
from ..ledger import export as exporter
from ..ledger.facade import Ledger
from ..ledger.records import CallRecord
from ..ledger.rows import INSERT_SQL, SELECT_SQL, from_row, to_row
from ..ledger.store import LedgerStore, open_store

_LEDGER = click.option("--ledger", "ledger_url", envvar="UNILLM_LEDGER", default=None,
                       metavar="URL", help="sqlite:///PATH.db (default: $UNILLM_LEDGER or the "
                       "default ledger file)")
_SINCE = click.option("--since", default=None, help="e.g. 7d, 24h, 2w, 2025-01-31")
_UNTIL = click.option("--until", default=None, help="e.g. 1d, 2025-02-01")
_WHERE = click.option("--where", "where", multiple=True, metavar="KEY=VALUE",
                      help="filter, repeatable: model=gpt-4o, tag:user=u42, section=agent:x")


def _where(pairs: Sequence[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.ClickException(f"--where {pair!r}: expected KEY=VALUE, e.g. model=gpt-4o")
        key = key.strip()
        if key in out:  # repeated key: any of the values
            prev = out[key]
            out[key] = [*prev, value] if isinstance(prev, list) else [prev, value]
        else:
            out[key] = value
    return out


def _guard(fn: Callable[[], Any]) -> Any:
    """Run ``fn``; unillm user errors become one clean ClickException line."""
    try:
        return fn()
    except (errors.ConfigError, errors.InvalidRequestError, errors.MissingDependencyError,
            errors.MissingPriceError) as exc:
        raise click.ClickException(str(exc)) from exc


def _ledger(url: str | None, pricebook: Any = None) -> Ledger:
    return Ledger(_guard(lambda: open_store(url, create=False)), pricebook)


def _pricebook(pricing: str | None) -> Any:
    try:
        from ..pricing import PriceBook
    except ImportError as exc:
        raise click.ClickException(f"pricing is unavailable: {exc}") from exc
    return _guard(lambda: PriceBook.load(pricing))


def _table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    line = lambda vals: "  ".join(v.rjust(w) if _numeric(v) else v.ljust(w)  # noqa: E731
                                  for v, w in zip(vals, widths)).rstrip()
    return "\n".join([line(columns), line(["-" * w for w in widths]), *map(line, cells)])


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    return str(exporter.plain(v)) if not isinstance(v, dict) else json.dumps(v, sort_keys=True)


def _numeric(v: str) -> bool:
    return v.replace(".", "", 1).replace("-", "", 1).isdigit()


@click.group()
def group() -> None:
    """Read the ledger: what was called, what it cost."""


@group.command()
@click.option("--by", default="model", show_default=True,
              help="comma-separated: provider, model, day, hour, week, month, status, section, "
                   "rule, tag:NAME")
@_SINCE
@_UNTIL
@_WHERE
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
@_LEDGER
def summary(by: str, since: str | None, until: str | None, where: tuple[str, ...], fmt: str,
            ledger_url: str | None) -> None:
    """Calls, errors, tokens, cost and latency per group."""
    keys = [k.strip() for k in by.split(",") if k.strip()]
    ledger = _ledger(ledger_url)
    rows = _guard(lambda: ledger.summary(by=keys, since=since, until=until, where=_where(where)))
    if fmt == "table":
        cols = [*keys, "calls", "errors", "cache_hits", "input_tokens", "output_tokens",
                "cost_usd", "saved_usd", "p50_latency_ms", "p95_latency_ms"]
        click.echo(_table(rows, cols) if rows else "no calls recorded in that range")
    else:
        exporter.write(fmt, rows, sys.stdout)


@group.command(name="export")
@click.option("--format", "fmt", type=click.Choice(list(exporter.FORMATS)), default="csv",
              show_default=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="file to write ('-' for standard output; not for parquet)")
@_SINCE
@_UNTIL
@_WHERE
@_LEDGER
def export_cmd(fmt: str, output: str, since: str | None, until: str | None,
               where: tuple[str, ...], ledger_url: str | None) -> None:
    """Write the records themselves (every field) to a file."""
    if output == "-" and fmt == "parquet":
        raise click.ClickException("parquet needs a file: -o FILE.parquet")
    ledger = _ledger(ledger_url)
    target: Any = sys.stdout if output == "-" else output
    n = _guard(lambda: ledger.export(fmt, target, since=since, until=until, where=_where(where)))
    if output != "-":
        click.echo(f"wrote {n} record(s) to {output}", err=True)


@group.command()
@click.option("-n", "count", default=10, show_default=True, help="how many recent records first")
@click.option("-f", "--follow", is_flag=True, help="keep printing new records as they arrive")
@click.option("--interval", default=1.0, show_default=True, help="seconds between polls")
@click.option("--max-polls", default=None, type=int, hidden=True)
@_LEDGER
def tail(count: int, follow: bool, interval: float, max_polls: int | None,
         ledger_url: str | None) -> None:
    """Print the most recent records, as JSON lines."""
    ledger = _ledger(ledger_url)
    store = ledger.store
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
@click.option("--model", required=True, help="the model to compare with, e.g. openai/gpt-4o-mini")
@click.option("--provider", default=None, help="its provider, when --model has no 'provider/'")
@click.option("--pricing", default=None, type=click.Path(dir_okay=False),
              help="a price file merged over the bundled one")
@_SINCE
@_UNTIL
@_WHERE
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table",
              show_default=True)
@_LEDGER
def whatif(model: str, provider: str | None, pricing: str | None, since: str | None,
           until: str | None, where: tuple[str, ...], fmt: str, ledger_url: str | None) -> None:
    """What the recorded calls would have cost on another model."""
    ledger = _ledger(ledger_url, _pricebook(pricing))
    result = _guard(lambda: ledger.whatif(model, provider=provider, since=since, until=until,
                                          where=_where(where)))
    if fmt == "json":
        body = {k: exporter.plain(v) for k, v in vars(result).items() if k != "rows"}
        body["rows"] = [{k: exporter.plain(v) for k, v in r.items()} for r in result.rows]
        click.echo(json.dumps(body, indent=2))
        return
    cols = ["provider", "model", "calls", "original_usd", "hypothetical_usd", "difference_usd"]
    click.echo(_table(result.rows, cols) if result.rows else "no priced calls in that range")
    verdict = "save" if result.difference_usd < 0 else "cost an extra"
    click.echo(f"\non {result.provider}/{result.model}: {result.calls} call(s) would "
               f"{verdict} ${abs(result.difference_usd)} "
               f"(${result.original_usd} -> ${result.hypothetical_usd})"
               + (f"; {result.unpriced_calls} unpriced call(s) left out"
                  if result.unpriced_calls else ""))


# ── migrate ──────────────────────────────────────────────────────────────────

_INSERT_NEW = INSERT_SQL + " ON CONFLICT (id) DO NOTHING"  # ids are unique: re-runs copy nothing
_BATCH = 1000


@group.command()
@click.option("--to", "to_url", required=True, metavar="URL",
              help="the ledger to copy into, e.g. postgresql://user@host:5432/unillm")
@click.option("--from", "from_url", envvar="UNILLM_LEDGER", default=None, metavar="URL",
              help="the ledger to copy from (default: $UNILLM_LEDGER or the default ledger file)")
def migrate(to_url: str, from_url: str | None) -> None:
    """Copy every record into another ledger (SQLite -> PostgreSQL), checked, safe to re-run.

    Each batch is read back from the target and compared field by field; the row
    count and the exact cost sum of both sides are printed at the end.
    """
    source = _guard(lambda: open_store(from_url, create=False))
    target = _guard(lambda: open_store(to_url))
    if source.url == target.url:
        raise click.ClickException("--from and --to name the same ledger")
    expected = sum(r["calls"] for r in source.summary())
    copied = checked = 0
    source_cost = target_cost = Decimal(0)
    with click.progressbar(length=expected, label="copying", file=sys.stderr) as bar:
        for batch in _batches(source.records(), _BATCH):
            copied += _guard(functools.partial(_insert_new, target, batch))
            back = _guard(functools.partial(_read_back, target, [r.id for r in batch]))
            for rec in batch:
                if back.get(rec.id) != rec:
                    raise click.ClickException(
                        f"record {rec.id} differs in {target.url}: the target already held "
                        "another record with that id, or could not store it exactly")
            checked += len(batch)
            source_cost += _cost(batch)
            target_cost += _cost(back.values())
            bar.update(len(batch))
    click.echo(f"copied {copied} new record(s) from {source.url} to {target.url} "
               f"({checked - copied} already there)")
    click.echo(f"checked: {checked} record(s) in both, cost ${source_cost} in source, "
               f"${target_cost} in target")
    if checked < expected or source_cost != target_cost:
        raise click.ClickException(f"mismatch: {expected} record(s) in the source, {checked} "
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


def _insert_new(store: LedgerStore, batch: list[CallRecord]) -> int:
    """Insert the records whose id is not in ``store`` yet, in one transaction; how many."""
    with store.transaction() as tx:
        return sum(max(tx.execute(_INSERT_NEW, to_row(r)).rowcount, 0) for r in batch)


def _read_back(store: LedgerStore, ids: list[str]) -> dict[str, CallRecord]:
    marks = ", ".join("?" for _ in ids)
    with store.transaction() as tx:
        rows = tx.execute(f"{SELECT_SQL} WHERE id IN ({marks})", ids).fetchall()
    return {r.id: r for r in map(from_row, rows)}


def _cost(recs: Iterable[CallRecord]) -> Decimal:
    return sum((r.total_usd for r in recs if r.total_usd is not None), Decimal(0))


__all__ = ["group"]
