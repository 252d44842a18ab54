"""`CallRecord` <-> SQL row, the same for every SQL backend.

Timestamps are fixed-width ISO-8601 UTC text (``2025-01-31T14:05:09.123456Z``):
they sort and compare as text, and day/hour/month buckets are prefixes. Money
items are exact decimal text; the total and the saving are also kept as
``(nano, atto)`` integer pairs (see `money`) so SQL sums stay exact. Tags are
JSON text with sorted keys.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from . import money
from .records import COST_FIELDS, FIELDS, CallRecord

TABLE = "ledger_calls"

#: how a `CallRecord` field is stored when it is not stored as it is: one entry per kind
#: of field, so a new field is one line in records.py (and its migration), nothing here
_MONEY_PAIRS = {"total_usd": ("total_nano", "total_atto"), "saved_usd": ("saved_nano", "saved_atto")}
_TIMES = frozenset({"started_at", "ended_at"})
_ITEMS = frozenset(COST_FIELDS)
_BOOLS = frozenset({"stream", "retried"})
_DICTS = frozenset({"tags", "usage_sources"})


def _columns(field: str) -> tuple[str, ...]:
    return _MONEY_PAIRS.get(field, (field,))


#: the columns written for a record, in order (``seq`` is assigned by the database)
COLUMNS: tuple[str, ...] = tuple(c for f in FIELDS for c in _columns(f))
#: where ``started_at`` stands in a `SELECT_SQL` row (after ``seq``)
STARTED_AT = 1 + COLUMNS.index("started_at")
INSERT_SQL = (f"INSERT INTO {TABLE} ({', '.join(COLUMNS)}) "
              f"VALUES ({', '.join('?' for _ in COLUMNS)})")
SELECT_SQL = f"SELECT seq, {', '.join(COLUMNS)} FROM {TABLE}"

_UTC = timezone.utc


def iso(dt: datetime | None) -> str | None:
    """Fixed-width UTC ISO text; a naive datetime is taken to be UTC already."""
    if dt is None:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=_UTC)
    elif dt.utcoffset():
        dt = dt.astimezone(_UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":")) if value else "{}"


def _units_text(value: dict[str, Decimal]) -> str:
    return _json({k: format(v, "f") for k, v in value.items()})


def _units_value(text: str | None) -> dict[str, Decimal]:
    return {k: Decimal(v) for k, v in json.loads(text).items()} if text and text != "{}" else {}


def _dict_value(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text and text != "{}" else {}


def _codec(field: str) -> tuple[Any, Any]:
    """``(encode, decode)`` of one field's column (None: stored as it is)."""
    if field in _TIMES:
        return iso, parse_iso
    if field in _ITEMS:
        return _text, _dec
    if field in _BOOLS:
        return (lambda v: 1 if v else 0), bool
    if field in _DICTS:
        return _json, _dict_value
    if field == "units":
        return _units_text, _units_value
    if field == "dropped_params":
        return (lambda v: json.dumps(list(v)) if v else None), (lambda t: tuple(json.loads(t)) if t else ())
    return None, None


#: each field with its codec, built once (a row is encoded on every call: no per-field dispatch)
_CODECS = [(f, f in _MONEY_PAIRS, *_codec(f)) for f in FIELDS]


def to_row(rec: CallRecord) -> tuple[Any, ...]:
    """The values for `INSERT_SQL`, in `COLUMNS` order."""
    out: list[Any] = []
    for f, pair, encode, _ in _CODECS:
        value = getattr(rec, f)
        if pair:
            out.extend(money.split(value))
        else:
            out.append(value if encode is None else encode(value))
    return tuple(out)


def from_row(row: tuple[Any, ...]) -> CallRecord:
    """A record from a `SELECT_SQL` row (the leading ``seq`` is skipped)."""
    values = iter(row[1:])
    fields: dict[str, Any] = {}
    for f, pair, _, decode in _CODECS:
        if pair:
            nano, atto = next(values), next(values)
            fields[f] = None if nano is None else money.join(nano, atto)
        else:
            value = next(values)
            fields[f] = value if decode is None else decode(value)
    return CallRecord(**fields)
