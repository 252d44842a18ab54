"""Write records (or summary rows) as CSV, JSON, JSONL or Parquet.

Money is written as exact decimal text (JSON, CSV) or ``decimal128(38, 18)``
(Parquet), never as a float. CSV cells holding text that begins with ``=``,
``+``, ``-``, ``@``, tab or carriage return get a leading apostrophe so a
spreadsheet shows them instead of running them as formulas; numbers are left
as they are.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from .. import errors
from .records import FIELDS, CallRecord
from .rows import iso

FORMATS = ("csv", "json", "jsonl", "parquet")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> Any:
    """A CSV cell value that no spreadsheet will evaluate as a formula."""
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value
    return value


def plain(value: Any) -> Any:
    """A JSON-ready value: Decimal -> exact text, datetime -> ISO UTC, dict kept."""
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict) and any(isinstance(v, Decimal) for v in value.values()):
        return {k: plain(v) for k, v in value.items()}
    return value


def record_dict(rec: CallRecord) -> dict[str, Any]:
    return {f: plain(getattr(rec, f)) for f in FIELDS}


@contextmanager
def _open(target: str | Path | IO[Any], binary: bool = False) -> Iterator[IO[Any]]:
    if isinstance(target, (str, Path)):
        mode = "wb" if binary else "w"
        kwargs: dict[str, Any] = {} if binary else {"encoding": "utf-8", "newline": ""}
        with open(target, mode, **kwargs) as f:
            yield f
    else:
        yield target


def write(fmt: str, rows: Iterable[dict[str, Any]], target: str | Path | IO[Any],
          columns: list[str] | None = None) -> int:
    """Write dict ``rows`` to ``target`` (a path or an open file) as ``fmt``; returns the count."""
    fmt = (fmt or "").lower()
    if fmt not in FORMATS:
        raise errors.InvalidRequestError(
            f"unknown export format {fmt!r}: use one of {', '.join(FORMATS)}", param="fmt")
    if fmt == "parquet":
        return _parquet(rows, target)
    with _open(target) as f:
        return {"csv": _csv, "json": _json, "jsonl": _jsonl}[fmt](rows, f, columns)


def _csv(rows: Iterable[dict[str, Any]], f: IO[str], columns: list[str] | None) -> int:
    writer: csv.writer | None = None  # type: ignore[valid-type]
    n = 0
    for row in rows:
        if writer is None:
            columns = columns or list(row)
            writer = csv.writer(f)
            writer.writerow(columns)
        cells = [safe_cell(_csv_text(row.get(c))) for c in columns]
        writer.writerow(cells)
        n += 1
    if writer is None and columns:
        csv.writer(f).writerow(columns)
    return n


def _csv_text(value: Any) -> Any:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True, ensure_ascii=False) if value or isinstance(value, dict) else ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else plain(value)


def _json(rows: Iterable[dict[str, Any]], f: IO[str], columns: list[str] | None) -> int:
    f.write("[")
    n = 0
    for row in rows:
        f.write(",\n" if n else "\n")
        f.write(json.dumps({k: plain(v) for k, v in row.items()}, ensure_ascii=False))
        n += 1
    f.write("\n]\n" if n else "]\n")
    return n


def _jsonl(rows: Iterable[dict[str, Any]], f: IO[str], columns: list[str] | None) -> int:
    n = 0
    for row in rows:
        f.write(json.dumps({k: plain(v) for k, v in row.items()}, ensure_ascii=False) + "\n")
        n += 1
    return n


def _parquet(rows: Iterable[dict[str, Any]], target: str | Path | IO[Any],
             batch: int = 10_000) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise errors.MissingDependencyError("pyarrow", "parquet") from None
    writer = None
    n = 0
    buf: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal writer
        schema = _record_schema(pa) if set(buf[0]) == set(FIELDS) else None
        table = pa.Table.from_pylist([_arrow_row(r) for r in buf], schema=schema)
        if writer is None:
            writer = pq.ParquetWriter(target, table.schema)
        writer.write_table(table.cast(writer.schema))
        buf.clear()

    try:
        for row in rows:
            buf.append(row)
            n += 1
            if len(buf) >= batch:
                flush()
        if buf or writer is None:
            if not buf:
                pq.write_table(pa.table({}), target)
                return 0
            flush()
    finally:
        if writer is not None:
            writer.close()
    return n


def _record_schema(pa: Any) -> Any:
    """The Parquet schema of a `CallRecord` export: exact decimals, UTC timestamps."""
    usd = pa.decimal128(38, 18)
    ts = pa.timestamp("us", tz="UTC")
    types = {"started_at": ts, "ended_at": ts, "latency_ms": pa.float64(), "ttft_ms": pa.float64(),
             "stream": pa.bool_(), "retried": pa.bool_(), "attempt": pa.int64(),
             "saved_usd": usd, "total_usd": usd}
    for name in FIELDS:
        if name.endswith("_tokens"):
            types[name] = pa.int64()
        elif name.endswith("_usd"):
            types[name] = usd
    return pa.schema([(name, types.get(name, pa.string())) for name in FIELDS])


def _arrow_row(row: dict[str, Any]) -> dict[str, Any]:
    """Tags as JSON text (a stable column type); Decimals scaled to 18 places."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if isinstance(v, dict):
            v = json.dumps(v, sort_keys=True, ensure_ascii=False)
        elif isinstance(v, (list, tuple)):  # dropped_params: JSON text, None when nothing was dropped
            v = json.dumps(list(v), ensure_ascii=False) if v else None
        elif isinstance(v, Decimal):
            v = v.quantize(Decimal("1e-18"))
        out[k] = v
    return out
