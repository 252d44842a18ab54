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
from .records import COST_FIELDS, TOKEN_FIELDS, CallRecord

TABLE = "ledger_calls"

#: the columns written for a record, in order (``seq`` is assigned by the database)
COLUMNS: tuple[str, ...] = (
    "id", "started_at", "ended_at", "latency_ms", "ttft_ms",
    "provider", "requested_model", "model", "rule", "shadow_rule", "fallback_from",
    "status", "error_class", *TOKEN_FIELDS, "usage_source", *COST_FIELDS,
    "total_nano", "total_atto", "saved_nano", "saved_atto", "saved_reason",
    "price_version", "fingerprint", "tags", "section", "stream", "prompt", "response",
    "cache_write_1h_tokens",
)
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


def to_row(rec: CallRecord) -> tuple[Any, ...]:
    """The values for `INSERT_SQL`, in `COLUMNS` order."""
    total_nano, total_atto = money.split(rec.total_usd)
    saved_nano, saved_atto = money.split(rec.saved_usd)
    return (
        rec.id, iso(rec.started_at), iso(rec.ended_at), rec.latency_ms, rec.ttft_ms,
        rec.provider, rec.requested_model, rec.model, rec.rule, rec.shadow_rule,
        rec.fallback_from, rec.status, rec.error_class,
        rec.input_tokens, rec.cache_read_tokens, rec.cache_write_tokens, rec.output_tokens,
        rec.reasoning_tokens, rec.usage_source,
        _text(rec.input_usd), _text(rec.cache_read_usd), _text(rec.cache_write_usd),
        _text(rec.output_usd), _text(rec.other_usd),
        total_nano, total_atto, saved_nano, saved_atto, rec.saved_reason,
        rec.price_version, rec.fingerprint,
        json.dumps(rec.tags, sort_keys=True, separators=(",", ":")) if rec.tags else "{}",
        rec.section, 1 if rec.stream else 0, rec.prompt, rec.response, rec.cache_write_1h_tokens,
    )


def from_row(row: tuple[Any, ...]) -> CallRecord:
    """A record from a `SELECT_SQL` row (the leading ``seq`` is skipped)."""
    (_seq, id_, started, ended, latency, ttft, provider, requested, model, rule, shadow,
     fallback, status, error_class, in_t, cr_t, cw_t, out_t, rs_t, source,
     in_usd, cr_usd, cw_usd, out_usd, other_usd, total_nano, total_atto,
     saved_nano, saved_atto, saved_reason, price_version, fingerprint, tags, section,
     stream, prompt, response, cw1h_t) = row
    return CallRecord(
        id=id_, started_at=parse_iso(started), ended_at=parse_iso(ended),  # type: ignore[arg-type]
        latency_ms=latency, ttft_ms=ttft, provider=provider, requested_model=requested,
        model=model, rule=rule, shadow_rule=shadow, fallback_from=fallback, status=status,
        error_class=error_class, input_tokens=in_t, cache_read_tokens=cr_t,
        cache_write_tokens=cw_t, cache_write_1h_tokens=cw1h_t, output_tokens=out_t,
        reasoning_tokens=rs_t,
        usage_source=source, input_usd=_dec(in_usd), cache_read_usd=_dec(cr_usd),
        cache_write_usd=_dec(cw_usd), output_usd=_dec(out_usd), other_usd=_dec(other_usd),
        total_usd=None if total_nano is None else money.join(total_nano, total_atto),
        saved_usd=money.join(saved_nano, saved_atto), saved_reason=saved_reason,
        price_version=price_version, fingerprint=fingerprint,
        tags=json.loads(tags) if tags and tags != "{}" else {}, section=section,
        stream=bool(stream), prompt=prompt, response=response,
    )
