"""`Ledger`: what ``client.ledger`` is — record, summarize, export, what-if.

``Ledger(store, pricebook, default_tags)`` needs only a store and something with
``pricebook.cost(provider, model, usage, at=None) -> Cost`` that raises
`MissingPriceError` for an unknown model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
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

#: the most tokens one bucket of one recorded call may hold, and the most of one metered unit:
#: far above any real call (10 billion tokens), low enough that no sum the ledger keeps can
#: overflow at any volume a deployment can reach
MAX_TOKENS = 10**10
MAX_UNITS = 10**10


class PriceBook(Protocol):
    def cost(self, provider: str, model: str, usage: Any, at: datetime | None = None, *,
             units: Mapping[str, Any] | None = None) -> Any: ...

    def price(self, provider: str, model: str, at: datetime | None = None) -> Any: ...


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
                 on_missing_price: str = "raise", resolver: Callable[[str], Any] | None = None) -> None:
        self.store = store
        self.resolver = resolver  # model name -> ModelRef, as chat() resolves it (whatif)
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
               status: str = "ok", usage_source: str = "provider",
               units: Mapping[str, Any] | None = None) -> CallRecord:
        """Price and record usage reported by another system.

        ``at`` is when the call ran: it is priced at the rate in force then.
        ``units`` are non-token quantities the book prices per unit (``calls``,
        ``images``, ``chars``, ``minutes``: ``per_call``, ``per_image``,
        ``per_1k_chars``, ``per_minute``), billed into ``other_usd``.
        ``section`` defaults to the `unillm.sections` path in force. Bad input
        raises `InvalidRequestError` whose ``param`` names the field; every count is
        at most `MAX_TOKENS` (`MAX_UNITS` for a unit).
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
        metered = parse_units(units)
        from ..types import Usage
        usage = Usage(**counts, source=usage_source)
        cost = self._price(provider, model, usage, when, metered)
        if section is None:
            section = sections.current()
        rec = CallRecord.from_parts(
            provider=provider, model=model, usage=usage, cost=cost,
            status="unpriced" if cost is None and status == "ok" else status,
            started_at=when, ended_at=when, latency_ms=latency,
            requested_model=requested_model or model, tags=merged,
            section=_optional_text("section", section), units=metered)
        self.store.record(rec)
        return rec

    def _price(self, provider: str, model: str, usage: Any, at: datetime,
               units: Mapping[str, Decimal] | None = None) -> Any:
        if self.pricebook is None:
            if self.on_missing_price == "record":
                return None
            raise errors.ConfigError("this ledger has no price book to price usage with",
                                     key="pricing")
        try:
            if not units:
                return self.pricebook.cost(provider, model, usage, at=at)
            _check_unit_prices(self.pricebook.price(provider, model, at), units)
            return self.pricebook.cost(provider, model, usage, at=at, units=units)
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
        """Re-price recorded usage as if every call had run on ``model``.

        ``model`` is resolved as ``chat()`` resolves it (aliases, prefixes, profiles):
        through the client's resolver, else the bundled profiles.
        """
        provider, model = _target(provider, model, self.resolver)
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
    if value > MAX_TOKENS:
        raise errors.InvalidRequestError(
            f"{param} must be at most {MAX_TOKENS:,} (10^10) for one call, got {value:,}", param=param)
    return value


def parse_units(units: Any) -> dict[str, Decimal]:
    """``units`` as unit name -> exact Decimal count, each known to the price book and bounded."""
    if units is None:
        return {}
    if not isinstance(units, Mapping):
        raise errors.InvalidRequestError(f"units must be a dict of unit name to count, got {units!r}",
                                         param="units")
    from ..pricing import UNITS
    out: dict[str, Decimal] = {}
    for name, value in units.items():
        if name not in UNITS:
            raise errors.InvalidRequestError(
                f"unknown unit {name!r}; known: {', '.join(sorted(UNITS))}", param=f"units.{name}")
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
            raise errors.InvalidRequestError(
                f"units.{name} must be a number, got {value!r}", param=f"units.{name}")
        try:  # a float through its shortest repr: 1.5 minutes is exactly 1.5
            count = Decimal(repr(value) if isinstance(value, float) else value)
        except ArithmeticError:
            count = Decimal("NaN")
        if not count.is_finite() or count < 0 or count > MAX_UNITS:
            raise errors.InvalidRequestError(
                f"units.{name} must be a number from 0 to {MAX_UNITS:,}, got {value!r}",
                param=f"units.{name}")
        out[name] = count
    return out


def _check_unit_prices(price: Any, units: Mapping[str, Decimal]) -> None:
    """Refuse a metered unit the model has no price for: it would be a silent $0."""
    from ..pricing import UNIT_KEYS
    for key, unit in UNIT_KEYS.items():
        if units.get(unit) and getattr(price, key) is None:
            raise errors.InvalidRequestError(
                f"units.{unit}: {price.provider}/{price.model} has no {key} price in the book, "
                f"so {unit} cannot be priced (count them as tokens, or add {key} to a price file)",
                param=f"units.{unit}")


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


def _target(provider: str | None, model: str,
            resolver: Callable[[str], Any] | None = None) -> tuple[str, str]:
    """(provider, vendor model) for a what-if target, resolved as ``chat()`` resolves it."""
    model = _text("model", model)
    name = model if provider is None else f"{_text('provider', provider)}/{model}"
    if resolver is None:
        from ..profiles import Resolver, build_settings
        resolver = Resolver(build_settings({})).resolve  # what Client() resolves with
    try:
        ref = resolver(name)
    except errors.UnknownModelError:
        if "/" not in name:
            raise
        head, rest = name.split("/", 1)  # a provider no profile knows: the price book may
        return head, rest
    return ref.provider, ref.model
