"""`CallRecord` <-> SQL row, the same for every SQL backend.

Timestamps are fixed-width ISO-8601 UTC text (``2025-01-31T14:05:09.123456Z``):
they sort and compare as text, and day/hour/month buckets are prefixes. Money
items are exact decimal text; the total and the saving are also kept as
``(nano, atto)`` integer pairs (see `money`) so SQL sums stay exact. Tags are
JSON text with sorted keys. Each field's codec follows from its type in `CallRecord`
(`CODECS`), so a new field is one line in records.py and its migration; a field of a
type with no codec fails at import.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from . import money
from .records import FIELDS, CallRecord

TABLE = "ledger_calls"

#: the two money fields kept as ``(nano, atto)`` integer pairs too, so SQL sums stay exact
_MONEY_PAIRS = {"total_usd": ("total_nano", "total_atto"), "saved_usd": ("saved_nano", "saved_atto")}
#: each field's declared type (`CallRecord` is the table: a field's type chooses its codec)
_TYPES: dict[str, Any] = typing.get_type_hints(CallRecord)


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
        text = dt.isoformat()
    else:  # isoformat, not strftime (which builds a time tuple): the same text, less its "+00:00"
        text = (dt.astimezone(_UTC) if dt.utcoffset() else dt).isoformat()[:-6]
    return text + "Z" if len(text) > 19 else text + ".000000Z"  # isoformat leaves out zero microseconds


def parse_iso(text: str | None) -> datetime | None:
    if text is None:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _text(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


#: one encoder for every row (``json.dumps`` with options builds a new one per call)
_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode


def _json(value: Any) -> str:
    return _ENCODE(value) if value else "{}"


def _units_text(value: dict[str, Decimal]) -> str:
    return _json({k: format(v, "f") for k, v in value.items()})


def _units_value(text: str | None) -> dict[str, Decimal]:
    return {k: Decimal(v) for k, v in json.loads(text).items()} if text and text != "{}" else {}


def _dict_value(text: str | None) -> dict[str, Any]:
    return json.loads(text) if text and text != "{}" else {}


def _tuple_text(value: tuple[str, ...]) -> str | None:
    return json.dumps(list(value)) if value else None


def _tuple_value(text: str | None) -> tuple[str, ...]:
    return tuple(json.loads(text)) if text else ()


def _flag(value: bool) -> int:
    return 1 if value else 0


#: how a field of each type is stored when not as it is: ``(encode, decode)``
CODECS: dict[Any, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {
    datetime: (iso, parse_iso), datetime | None: (iso, parse_iso),
    Decimal | None: (_text, _dec), Decimal: (_text, _dec),
    bool: (_flag, bool),
    dict[str, str]: (_json, _dict_value),
    dict[str, Decimal]: (_units_text, _units_value),
    tuple[str, ...]: (_tuple_text, _tuple_value),
}
#: the types the database stores as they are
PLAIN: frozenset[Any] = frozenset({str, int, str | None, int | None, float | None})


def _codec(field: str) -> tuple[Any, Any]:
    """``(encode, decode)`` of one field's column (None: stored as it is)."""
    kind = _TYPES[field]
    if kind in CODECS:
        return CODECS[kind]
    if kind in PLAIN or typing.get_origin(kind) is typing.Literal:
        return None, None
    raise TypeError(f"CallRecord.{field}: no ledger codec for {kind!r} (add one to rows.CODECS)")


#: each field with its codec, built once (a row is encoded on every call: no per-field dispatch)
_CODECS = [(f, f in _MONEY_PAIRS, *_codec(f)) for f in FIELDS]


def _compile_to_row() -> Callable[[CallRecord], tuple[Any, ...]]:
    """`to_row` as one tuple expression over the record's attributes, generated once from
    `_CODECS` (a row is encoded on every call: no loop, no ``getattr``, no per-field branch)."""
    env: dict[str, Any] = {"_split": money.split}
    items = []
    for i, (f, pair, encode, _) in enumerate(_CODECS):
        if pair:
            items.append(f"*_split(rec.{f})")
        elif encode is None:
            items.append(f"rec.{f}")
        else:
            env[f"_e{i}"] = encode
            items.append(f"_e{i}(rec.{f})")
    source = f"def to_row(rec):\n    return ({', '.join(items)},)\n"
    exec(compile(source, f"<{__name__}.to_row>", "exec"), env)  # noqa: S102 - our own field names
    fn: Callable[[CallRecord], tuple[Any, ...]] = env["to_row"]
    fn.__doc__ = "The values for `INSERT_SQL`, in `COLUMNS` order."
    return fn


#: ``to_row(rec)``: the values for `INSERT_SQL`, in `COLUMNS` order
to_row = _compile_to_row()


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
