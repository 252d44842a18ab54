"""`Ledger`: what ``client.ledger`` is — record, summarize, export, what-if.

``Ledger(store, pricebook, default_tags)`` needs only a store and something with
``pricebook.cost(provider, model, usage, at=None) -> Cost`` that raises
`MissingPriceError` for an unknown model.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Protocol

from .. import errors, sections
from . import batch, fields
from . import export as exporter
from .fields import MAX_TOKENS, MAX_UNITS, parse_units
from .reads import SQLReads
from .records import TOKEN_FIELDS, CallRecord
from .store import LedgerStore
from .when import parse_when

_REPRICEABLE = ("ok", "partial", "unpriced")

__all__ = ["MAX_TOKENS", "MAX_UNITS", "Ledger", "PriceBook", "WhatIf", "parse_units"]


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
        """Store a record the Client built; durable when this returns. A ``cache_hit`` row
        (money-free) is committed by group commit instead, within a second, and before any
        read through this store: see `unillm.ledger.batch` for what that guarantees."""
        if rec.status == "cache_hit" and isinstance(self.store, SQLReads):
            batch.later(self.store, rec, owner=self)
        else:
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
        report = {k: v for k, v in locals().items() if k != "self"}  # exactly the REPORTED names
        clean, problems = fields.check(report)
        if problems:
            param, message = problems[0]
            raise errors.InvalidRequestError(message, param=param)
        from ..types import Usage
        usage = Usage(**{f.usage: clean[f.name] for f in fields.REPORTED if f.usage})
        when, metered = clean["at"], clean["units"]
        cost = self._price(clean["provider"], clean["model"], usage, when, metered)
        status = clean["status"]
        rec = CallRecord.from_parts(
            provider=clean["provider"], model=clean["model"], usage=usage, cost=cost,
            status="unpriced" if cost is None and status == "ok" else status,
            started_at=when, ended_at=when, latency_ms=clean["latency_ms"],
            requested_model=clean["requested_model"] or clean["model"],
            tags={**self.default_tags, **clean["tags"]},
            section=sections.current() if section is None else clean["section"], units=metered)
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
                where: Mapping[str, Any] | None = None, retries: bool = True,
                rollup: bool = False) -> list[dict[str, Any]]:
        """One row per group: calls, errors, cache_hits, tokens, cost_usd, saved_usd, p50/p95.

        Every HTTP attempt is a row; ``retries=False`` leaves out the attempts that were retried.
        ``rollup=True`` (with ``section`` in ``by``): each section's row counts its whole
        subtree, and every ancestor has a row, in tree order (``agent:research`` includes
        ``agent:research/llm:query``); each row is its own query, so percentiles stay exact."""
        keys = [by] if isinstance(by, str) else list(by or [])
        start, end = parse_when(since, param="since"), parse_when(until, param="until")
        if not rollup:
            return self.store.summary(keys, start, end, where, retries=retries)
        if "section" not in keys:
            raise errors.InvalidRequestError("rollup=True needs 'section' in by", param="rollup")
        rest = [k for k in keys if k != "section"]
        leaves = self.store.summary(["section"], start, end, where, retries=retries)
        scope = (where or {}).get("section")
        nodes: set[str] = set()
        for row in leaves:
            path = row["section"]
            if path is None:
                continue
            parts = path.split("/")
            nodes.update("/".join(parts[:i]) for i in range(1, len(parts) + 1))
        if isinstance(scope, str):  # ancestors above the filtered subtree are not in it
            nodes = {n for n in nodes if n == scope or n.startswith(scope + "/")}
        out: list[dict[str, Any]] = []
        for node in sorted(nodes, key=lambda n: n.split("/")):
            for row in self.store.summary(rest, start, end, {**(where or {}), "section": node}, retries=retries):
                out.append({"section": node, **row})
        if scope is None:
            out += self.store.summary(keys, start, end, {**(where or {}), "section": None}, retries=retries)
        order = [*keys]
        return [{k: r[k] for k in order} | {k: v for k, v in r.items() if k not in order} for r in out]

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

def _check_unit_prices(price: Any, units: Mapping[str, Decimal]) -> None:
    """Refuse a metered unit the model has no price for: it would be a silent $0."""
    from ..pricing import UNIT_KEYS
    for key, unit in UNIT_KEYS.items():
        if units.get(unit) and getattr(price, key) is None:
            raise errors.InvalidRequestError(
                f"units.{unit}: {price.provider}/{price.model} has no {key} price in the book, "
                f"so {unit} cannot be priced (count them as tokens, or add {key} to a price file)",
                param=f"units.{unit}")


def _target(provider: str | None, model: str,
            resolver: Callable[[str], Any] | None = None) -> tuple[str, str]:
    """(provider, vendor model) for a what-if target, resolved as ``chat()`` resolves it."""
    model = fields.value("model", model)
    name = model if provider is None else f"{fields.value('provider', provider)}/{model}"
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
