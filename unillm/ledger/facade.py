"""`Ledger`: what ``client.ledger`` is — record, summarize, export, what-if.

``Ledger(store, pricebook, default_tags)`` needs only a store and something with
``pricebook.cost(provider, model, usage, at=None) -> Cost`` that raises
`MissingPriceError` for an unknown model.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Protocol

from .. import errors, sections
from . import export as exporter
from .records import TOKEN_FIELDS, CallRecord
from .store import LedgerStore
from .when import parse_when

_REPRICEABLE = ("ok", "partial", "unpriced")


class PriceBook(Protocol):
    def cost(self, provider: str, model: str, usage: Any, at: datetime | None = None) -> Any: ...


@dataclass(frozen=True)
class WhatIf:
    """Recorded usage re-priced as if it had run on ``model``.

    ``difference_usd`` = hypothetical - original: negative means switching saves.
    Calls with no original price are counted in ``unpriced_calls`` and left out
    of both totals, so the comparison is like for like.
    """

    provider: str
    model: str
    calls: int
    original_usd: Decimal
    hypothetical_usd: Decimal
    difference_usd: Decimal
    unpriced_calls: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)  # per original provider/model


class Ledger:
    """Records calls into a store and answers questions about them."""

    def __init__(self, store: LedgerStore, pricebook: PriceBook | None = None,
                 default_tags: Mapping[str, str] | None = None, *,
                 on_missing_price: str = "raise") -> None:
        self.store = store
        self.pricebook = pricebook
        self.default_tags = {str(k): str(v) for k, v in (default_tags or {}).items()}
        self.on_missing_price = on_missing_price

    # ── writing ──────────────────────────────────────────────────────────────

    def add(self, rec: CallRecord) -> CallRecord:
        """Store a record the Client built; durable when this returns."""
        self.store.record(rec)
        return rec

    def record(self, *, provider: str, model: str, input_tokens: int, output_tokens: int,
               cache_read_tokens: int = 0, cache_write_tokens: int = 0,
               cache_write_1h_tokens: int = 0, reasoning_tokens: int = 0, tags: Mapping[str, str] | None = None,
               at: datetime | str | None = None, latency_ms: float | None = None,
               requested_model: str | None = None, section: str | None = None,
               status: str = "ok", usage_source: str = "provider") -> CallRecord:
        """Price and record usage reported by another system.

        ``section`` defaults to the `unillm.sections` path in force. Bad input
        raises `InvalidRequestError` whose ``param`` names the field.
        """
        provider = _text("provider", provider)
        model = _text("model", model)
        counts = {name: _count(name, value) for name, value in (
            ("input_tokens", input_tokens), ("output_tokens", output_tokens),
            ("cache_read_tokens", cache_read_tokens), ("cache_write_tokens", cache_write_tokens),
            ("cache_write_1h_tokens", cache_write_1h_tokens), ("reasoning_tokens", reasoning_tokens))}
        if counts["cache_write_1h_tokens"] > counts["cache_write_tokens"]:
            raise errors.InvalidRequestError(
                "cache_write_1h_tokens are part of cache_write_tokens and cannot exceed them",
                param="cache_write_1h_tokens")
        if counts["reasoning_tokens"] > counts["output_tokens"]:
            raise errors.InvalidRequestError(
                "reasoning_tokens are part of output_tokens and cannot exceed them",
                param="reasoning_tokens")
        when = _when(at)
        latency = _latency(latency_ms)
        merged = {**self.default_tags, **_tags(tags)}
        if status not in ("ok", "error", "partial", "cache_hit"):
            raise errors.InvalidRequestError(
                f"status must be ok, error, partial or cache_hit, got {status!r}", param="status")
        if usage_source not in ("provider", "tiktoken", "estimate"):
            raise errors.InvalidRequestError(
                f"usage_source must be provider, tiktoken or estimate, got {usage_source!r}",
                param="usage_source")
        from ..types import Usage
        usage = Usage(**counts, source=usage_source)  # type: ignore[arg-type]
        cost = self._price(provider, model, usage, when)
        if section is None:
            section = sections.current()
        rec = CallRecord.from_parts(
            provider=provider, model=model, usage=usage, cost=cost,
            status="unpriced" if cost is None and status == "ok" else status,
            started_at=when, ended_at=when, latency_ms=latency,
            requested_model=requested_model or model, tags=merged,
            section=_optional_text("section", section))
        self.store.record(rec)
        return rec

    def _price(self, provider: str, model: str, usage: Any, at: datetime) -> Any:
        if self.pricebook is None:
            if self.on_missing_price == "record":
                return None
            raise errors.ConfigError("this ledger has no price book to price usage with",
                                     key="pricing")
        try:
            return self.pricebook.cost(provider, model, usage, at=at)
        except errors.MissingPriceError:
            if self.on_missing_price == "record":
                return None
            raise

    # ── reading ──────────────────────────────────────────────────────────────

    def records(self, since: Any = None, until: Any = None, where: Mapping[str, Any] | None = None,
                limit: int | None = None) -> Iterator[CallRecord]:
        """Records oldest first; ``since``/``until`` accept datetimes, ``7d``, ISO text."""
        return self.store.records(parse_when(since, param="since"),
                                  parse_when(until, param="until"), where, limit)

    def summary(self, by: Sequence[str] | str | None = None, since: Any = None, until: Any = None,
                where: Mapping[str, Any] | None = None, retries: bool = True) -> list[dict[str, Any]]:
        """One row per group: calls, errors, cache_hits, tokens, cost_usd, saved_usd, p50/p95.

        Every HTTP attempt is a row; ``retries=False`` leaves out the attempts that were retried."""
        return self.store.summary(by or [], parse_when(since, param="since"),
                                  parse_when(until, param="until"), where, retries=retries)

    def export(self, fmt: str, path_or_file: str | Path | IO[Any], since: Any = None,
               until: Any = None, where: Mapping[str, Any] | None = None) -> int:
        """Write the matching records as csv, json, jsonl or parquet; returns how many."""
        rows = (r.to_dict() for r in self.records(since, until, where))
        return exporter.write(fmt, rows, path_or_file)

    def whatif(self, model: str, provider: str | None = None, since: Any = None,
               until: Any = None, where: Mapping[str, Any] | None = None) -> WhatIf:
        """Re-price recorded usage as if every call had run on ``model``."""
        provider, model = _target(provider, model)
        if self.pricebook is None:
            raise errors.ConfigError("what-if needs a price book", key="pricing")
        groups: dict[tuple[str, str], list[Any]] = {}
        unpriced = 0
        for rec in self.records(since, until, where):
            if rec.status not in _REPRICEABLE or not any(getattr(rec, t) for t in TOKEN_FIELDS):
                continue
            if rec.total_usd is None:
                unpriced += 1
                continue
            at = rec.started_at if rec.started_at.tzinfo else rec.started_at.replace(
                tzinfo=timezone.utc)
            new = self.pricebook.cost(provider, model, rec.usage(), at=at).total_usd
            acc = groups.setdefault((rec.provider, rec.model), [0, Decimal(0), Decimal(0)])
            acc[0] += 1
            acc[1] += rec.total_usd
            acc[2] += new
        rows = [{"provider": p, "model": m, "calls": n, "original_usd": o,
                 "hypothetical_usd": h, "difference_usd": h - o}
                for (p, m), (n, o, h) in sorted(groups.items())]
        original = sum((r["original_usd"] for r in rows), Decimal(0))
        hypothetical = sum((r["hypothetical_usd"] for r in rows), Decimal(0))
        return WhatIf(provider=provider, model=model, calls=sum(r["calls"] for r in rows),
                      original_usd=original, hypothetical_usd=hypothetical,
                      difference_usd=hypothetical - original, unpriced_calls=unpriced, rows=rows)

    def close(self) -> None:
        self.store.close()


# ── validation of input from outside ─────────────────────────────────────────

def _text(param: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise errors.InvalidRequestError(f"{param} must be a non-empty string, got {value!r}",
                                         param=param)
    return value.strip()


def _optional_text(param: str, value: Any) -> str | None:
    return None if value is None else _text(param, value)


def _count(param: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise errors.InvalidRequestError(
            f"{param} must be a whole number >= 0, got {value!r}", param=param)
    return value


def _latency(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 \
            or value == float("inf"):
        raise errors.InvalidRequestError(f"latency_ms must be a number >= 0, got {value!r}",
                                         param="latency_ms")
    return float(value)


def _when(at: Any) -> datetime:
    if at is None:
        return datetime.now(timezone.utc)
    if not isinstance(at, (datetime, date, str)):
        raise errors.InvalidRequestError(f"at must be a datetime or ISO text, got {at!r}",
                                         param="at")
    parsed = parse_when(at, param="at")
    assert parsed is not None
    return parsed


def _tags(tags: Any) -> dict[str, str]:
    if tags is None:
        return {}
    if not isinstance(tags, Mapping):
        raise errors.InvalidRequestError(f"tags must be a dict of str to str, got {tags!r}",
                                         param="tags")
    out: dict[str, str] = {}
    for k, v in tags.items():
        if not isinstance(k, str) or not k or not isinstance(v, str):
            raise errors.InvalidRequestError(
                f"tags must map non-empty strings to strings; bad entry {k!r}: {v!r}",
                param=f"tags.{k}")
        out[k] = v
    return out


def _target(provider: str | None, model: str) -> tuple[str, str]:
    model = _text("model", model)
    if provider is None and "/" in model:
        provider, model = model.split("/", 1)
    if provider is None:
        raise errors.InvalidRequestError(
            f"say which provider serves {model!r}: provider='openai' or model='openai/{model}'",
            param="provider")
    return _text("provider", provider), model
