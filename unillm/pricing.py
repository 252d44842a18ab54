"""The price book: ``pricing.toml`` (bundled) + a user file, and exact itemized cost.

The file format is a contract (see the header of ``pricing.toml``)::

    [openai."gpt-4o"]
    input = 2.50          # USD per 1M uncached input tokens
    cached_input = 1.25   # per 1M cache-read tokens
    output = 10.00        # per 1M output tokens (reasoning included)
    # optional: cache_write (per 1M cache-write tokens), cache_write_1h (per 1M of
    # those written with a 1-hour TTL, Anthropic)

Semantics, in one place:

* Prices are USD per 1M tokens, read as `Decimal` (``parse_float=Decimal``); every
  amount is computed exactly and nothing is rounded away.
* ``input`` and ``output`` are required: a price is never implicit, and free
  (self-hosted) models write ``0`` explicitly. Without ``cached_input`` cache
  reads bill at ``input``; without ``cache_write`` cache writes bill at ``input``.
  ``Usage.cache_write_1h_tokens`` (a part of ``cache_write_tokens``) bill at
  ``cache_write_1h``; without it they bill at ``cache_write``, then ``input``.
  ``Cost.cache_write_usd`` is the sum of both kinds of write.
* ``[[P."M".tiers]]``: when the prompt (uncached + cache read + cache write)
  exceeds ``above_prompt_tokens``, the WHOLE request bills at that tier's prices
  (the highest tier exceeded wins). A tier gives its own ``input`` and ``output``;
  its missing ``cached_input``/``cache_write`` bill at the tier's ``input``, and
  its missing ``cache_write_1h`` at the tier's ``cache_write`` (then ``input``).
* ``per_call`` (once per call), ``per_image``, ``per_1k_chars``, ``per_minute``
  bill units the caller counts (``units={"images": 2, "chars": 1800,
  "minutes": Decimal("1.5")}``) into ``Cost.other_usd``.
* ``since = YYYY-MM-DD`` dates the current price; ``[[P."M".history]]`` entries
  (each with ``until``, exclusive, and optionally ``since``) hold older prices.
  The price used is the first entry whose ``until`` is after the call's UTC
  date; a date before every entry's range is priced by the earliest one (clock
  skew never turns into an error or $0). Ranges may not overlap.
* ``aliases = [...]``: other names of the same model at the same price.
* ``max_output_tokens`` (model level only, a positive whole number): the most
  output tokens the vendor documents for the model. It follows lookup exactly as
  prices do (aliases, snapshots, router ids, ``P."*"``) and is on every entry
  (`Price.max_output_tokens`, `PricedModel.max_output_tokens`); None when unknown.
* ``[P."*"]``: an explicit catch-all price for every model of provider ``P``
  (e.g. ``ollama``: self-hosted, $0).

Lookup of ``(provider, model)``: exact -> alias -> dated snapshot or ``-latest``
name (``claude-sonnet-4-5-20250929``, ``gpt-4o-2024-08-06``, ``gemini-2.0-flash-001``)
priced as its family ONLY where the book says the vendor prices its snapshots the
same (``[openai] snapshots = "same-price"``; the default, ``"explicit"``, prices
such names only by their own entries or aliases, so ``mistral-medium-latest``
never takes the price of another generation; a model's own ``snapshots`` key
overrides its provider's) -> ``vendor/model`` ids of routers (``openrouter``
``openai/gpt-4o`` -> ``openai."gpt-4o"``) -> ``P."*"`` -> `MissingPriceError`.
`PriceBook.resolve` returns the steps taken, in words.

A user file merges over the bundled book by name, and wins for every name it
defines, a bundled alias included (see `unillm.price_files`).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow, localcontext
from itertools import pairwise
from pathlib import Path
from typing import Any

from . import errors
from .bundled import data_dir
from .price_files import (
    DEFAULT_SNAPSHOTS,
    TOKEN_KEYS,
    UNIT_KEYS,
    UNITS,
    Layer,
    Merged,
    merge,
    read_layer,
    read_price_file,
)
from .price_files import PRICE_KEYS as _PRICE_KEYS
from .price_files import fail as _fail
from .price_files import model_key as _key
from .types import Cost, Usage

__all__ = ["TOKEN_KEYS", "UNITS", "UNIT_KEYS", "Price", "PriceBook", "PricedModel", "Resolution", "Tier",
           "bundled_model_names", "bundled_path", "read_price_file", "today"]

_SNAPSHOT = re.compile(r"^(?P<base>.+?)(?:-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{2}-\d{4}|-\d{4}|-\d{3}|-latest)$")
_EXACT = Context(prec=200, traps=[Inexact, Overflow, InvalidOperation])
_MILLION = 6
_ZERO = Decimal(0)


def bundled_path() -> Path:
    """The bundled ``pricing.toml`` (inside the wheel, or at the repository root)."""
    return data_dir() / "pricing.toml"


# ── validated data ───────────────────────────────────────────────────────────

@dataclass(frozen=True)
class Tier:
    """Prices for the whole request once the prompt exceeds ``above_prompt_tokens``."""

    above_prompt_tokens: int
    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None

    @property
    def label(self) -> str:
        return f"above_prompt_tokens={self.above_prompt_tokens}"


@dataclass(frozen=True)
class Price:
    """One price entry in force over a date range, USD per 1M tokens."""

    provider: str
    model: str                      # the book's name for the model (after alias/snapshot lookup)
    input: Decimal
    output: Decimal
    cached_input: Decimal | None = None
    cache_write: Decimal | None = None
    cache_write_1h: Decimal | None = None
    per_call: Decimal | None = None
    per_image: Decimal | None = None
    per_1k_chars: Decimal | None = None
    per_minute: Decimal | None = None
    tiers: tuple[Tier, ...] = ()
    since: date | None = None
    until: date | None = None       # exclusive; None = still in force
    source: str = ""                # file and key, e.g. 'pricing.toml: openai."gpt-4o"'
    book_version: str = ""
    max_output_tokens: int | None = None  # the model's documented output limit (model level)

    def tier_for(self, prompt_tokens: int) -> Tier | None:
        """The highest tier the prompt exceeds, if any."""
        hit = [t for t in self.tiers if prompt_tokens > t.above_prompt_tokens]
        return max(hit, key=lambda t: t.above_prompt_tokens) if hit else None

    def cost(self, usage: Usage, *, units: Mapping[str, Any] | None = None) -> Cost:
        """Exact itemized cost of ``usage`` (and caller-counted ``units``) at this price."""
        tier = self.tier_for(usage.prompt_tokens) if self.tiers else None
        rates: Price | Tier = tier or self
        cached = rates.cached_input if rates.cached_input is not None else rates.input
        write = rates.cache_write if rates.cache_write is not None else rates.input
        write_1h = rates.cache_write_1h if rates.cache_write_1h is not None else write
        written_5m = usage.cache_write_tokens - usage.cache_write_1h_tokens
        return Cost(
            input_usd=_per_million(usage.input_tokens, rates.input),
            cache_read_usd=_per_million(usage.cache_read_tokens, cached),
            cache_write_usd=_EXACT.add(_per_million(written_5m, write),
                                       _per_million(usage.cache_write_1h_tokens, write_1h)),
            output_usd=_per_million(usage.output_tokens, rates.output),
            other_usd=self._units_cost(units) if units else self._fees,
            tier=tier.label if tier else None,
            price_version=self._version,
        )

    @functools.cached_property
    def _fees(self) -> Decimal:
        """What a call with no units counted costs besides its tokens (``per_call``)."""
        return self._units_cost({})

    @functools.cached_property
    def _version(self) -> str:
        """``Cost.price_version`` of every cost at this price."""
        return f"{self.book_version} {self.source}".strip()

    def worst_case(self, prompt_tokens: int) -> tuple[Decimal, Decimal]:
        """``(prompt_usd, usd_per_output_token)`` bounding a call with this prompt, for budgets:
        every prompt token at the dearest input rate (uncached, or written to the cache),
        each output token at the output rate of the tier the prompt falls in; per-call fees in."""
        rates: Price | Tier = self.tier_for(prompt_tokens) or self
        dearest = max(r for r in (rates.input, rates.cache_write, rates.cache_write_1h) if r is not None)
        with localcontext(_EXACT):
            return _per_million(prompt_tokens, dearest) + self._units_cost({}), _per_million(1, rates.output)

    def _units_cost(self, units: Mapping[str, Any]) -> Decimal:
        unknown = set(units) - UNITS
        if unknown:
            raise ValueError(f"unknown units {sorted(unknown)}; known: {sorted(UNITS)}")
        total = Decimal(0)
        with localcontext(_EXACT):
            for key, unit in UNIT_KEYS.items():
                rate = getattr(self, key)
                if rate is None:
                    continue
                count = _decimal(units.get(unit, 1 if unit == "calls" else 0))
                total += rate * count / (1000 if unit == "chars" else 1)
        return total

    def rows(self) -> list[tuple[str, Decimal]]:
        """``(key, price)`` pairs that are set, for display."""
        return [(k, getattr(self, k)) for k in _PRICE_KEYS if getattr(self, k) is not None]


def _per_million(tokens: int, rate: Decimal) -> Decimal:
    """Exact (`_EXACT`'s arithmetic, not a context switched in around it)."""
    return _EXACT.multiply(rate, tokens).scaleb(-_MILLION, _EXACT) if tokens else _ZERO


def _decimal(value: Any) -> Decimal:
    if isinstance(value, Decimal):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"unit counts must be numbers, got {value!r}")
    return Decimal(str(value))


@dataclass(frozen=True)
class PricedModel:
    """A model's price entries (oldest first, current last) and its aliases."""

    provider: str
    name: str
    entries: tuple[Price, ...]
    aliases: tuple[str, ...] = ()
    snapshots: str | None = None    # the model's own snapshot policy, over its provider's

    @property
    def current(self) -> Price:
        return self.entries[-1]

    @property
    def max_output_tokens(self) -> int | None:
        """The most output tokens the vendor documents for this model; None when unknown."""
        return self.current.max_output_tokens

    def at(self, day: date) -> Price:
        for entry in self.entries:
            if entry.until is None or day < entry.until:
                return entry
        return self.entries[-1]  # unreachable: the current entry has no until


# ── building the book ────────────────────────────────────────────────────────

def _build_tiers(tables: list[dict[str, Any]], file: str, key: str) -> tuple[Tier, ...]:
    tiers, seen = [], set()
    for i, t in enumerate(tables):
        k = f"{key}.tiers[{i}]"
        if "above_prompt_tokens" not in t:
            raise _fail("missing 'above_prompt_tokens'", file, k)
        missing = [p for p in ("input", "output") if p not in t]
        if missing:
            raise _fail(f"a tier needs its own prices; missing {', '.join(map(repr, missing))}", file, k)
        if t["above_prompt_tokens"] in seen:
            raise _fail(f"two tiers above {t['above_prompt_tokens']} prompt tokens", file, k)
        seen.add(t["above_prompt_tokens"])
        tiers.append(Tier(**t))
    return tuple(sorted(tiers, key=lambda t: t.above_prompt_tokens))


def _build_price(provider: str, model: str, t: dict[str, Any], file: str, key: str,
                 version: str, max_output: int | None) -> Price:
    missing = [p for p in ("input", "output") if p not in t]
    if missing:
        raise _fail(f"missing {' and '.join(map(repr, missing))}: a price is never implicit "
                    "(write 0 for a free model)", file, key)
    if t.get("since") and t.get("until") and t["since"] >= t["until"]:
        raise _fail(f"'since' {t['since']} is not before 'until' {t['until']}", file, key)
    prices = {k: t[k] for k in _PRICE_KEYS if k in t}
    return Price(provider=provider, model=model, tiers=_build_tiers(t.get("tiers", []), file, key),
                 since=t.get("since"), until=t.get("until"), source=f"{file}: {key}",
                 book_version=version, max_output_tokens=max_output, **prices)


def _build_model(provider: str, model: str, t: dict[str, Any], file: str,
                 version: str) -> PricedModel:
    key = _key(provider, model)
    max_output = t.get("max_output_tokens")
    history = []
    for i, h in enumerate(t.get("history", [])):
        if "until" not in h:
            raise _fail("a history entry needs 'until' (the day the next price started)",
                        file, f"{key}.history[{i}]")
        history.append(_build_price(provider, model, h, file, f"{key}.history[{i}]", version, max_output))
    history.sort(key=lambda p: p.until)  # type: ignore[arg-type, return-value]
    current = {k: v for k, v in t.items()
               if k not in ("history", "aliases", "note", "max_output_tokens", "snapshots")}
    entries = (*history, _build_price(provider, model, current, file, key, version, max_output))
    for before, after in pairwise(entries):
        start = after.since or before.until
        if before.until is not None and start is not None and start < before.until:
            raise _fail(f"price dates overlap: {before.source.split(': ', 1)[1]} runs until "
                        f"{before.until} but the next price starts {start}", file, key)
        if before.until == after.until:
            raise _fail(f"two history entries end on {before.until}", file, key)
    return PricedModel(provider, model, entries, tuple(t.get("aliases", ())), t.get("snapshots"))


def _version(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        digest.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@functools.lru_cache(maxsize=1)
def _bundled_raw() -> Layer:
    return read_layer(bundled_path(), bundled_path().name)


@dataclass(frozen=True)
class Resolution:
    """How a name found its price: the priced model (None: unpriced) and the steps taken."""

    provider: str
    model: str
    priced: PricedModel | None
    path: tuple[str, ...]


class PriceBook:
    """Prices by provider and model, in force by date; `cost` turns usage into money."""

    def __init__(self, merged: Merged, version: str) -> None:
        self.version = version
        self._models: dict[str, dict[str, PricedModel]] = {}
        self._aliases: dict[str, dict[str, str]] = {}
        self._alias_origins = merged.alias_origins
        self._overridden = merged.overridden
        self._settings = merged.settings
        for (provider, model), table in merged.tables.items():
            pm = _build_model(provider, model, table, merged.origins[(provider, model)], version)
            self._models.setdefault(provider, {})[model] = pm
        for (provider, alias), model in merged.aliases.items():
            self._aliases.setdefault(provider, {})[alias] = model
        self._priced_as: dict[str, str] = {}
        self._overrides: Mapping[tuple[str, str], tuple[Price, ...]] = {}

    def overlaid(self, overrides: Mapping[tuple[str, str], tuple[Price, ...]]) -> PriceBook:
        """This book with ``overrides`` (`unillm.price_overrides`) on top: on and after an
        override's ``since`` it prices its model, before it the book does."""
        book = object.__new__(PriceBook)
        book.__dict__.update(self.__dict__)
        book._overrides = overrides
        return book

    def priced_as(self, tables: Mapping[str, str]) -> PriceBook:
        """This book, where each ``provider`` in ``tables`` without an entry of its own for a
        model is priced by the entries of ``tables[provider]`` (a cloud provider such as
        ``azure-eastus`` by ``azure``'s; see `unillm.adapters.cloud.price_tables`)."""
        if not tables:
            return self
        book = object.__new__(PriceBook)
        book.__dict__.update(self.__dict__)
        book._priced_as = {**self._priced_as, **tables}
        return book

    # ── loading ──
    @classmethod
    def load(cls, user_file: str | Path | None = None) -> PriceBook:
        """The bundled book with ``user_file`` (if any) merged over it by name: the user's
        file wins for every name it defines (see `unillm.price_files`)."""
        if user_file is None:
            return _bundled_book()
        layers = [_bundled_raw(), read_layer(user_file)]
        return cls(merge(layers), _version([bundled_path(), Path(user_file)]))

    @classmethod
    def from_file(cls, path: str | Path) -> PriceBook:
        """A book made of ``path`` alone (no bundled prices), e.g. for ``pricing diff``."""
        return cls(merge([read_layer(path)]), _version([Path(path)]))

    # ── lookup ──
    def providers(self) -> list[str]:
        return sorted(self._models)

    def models(self) -> Iterator[PricedModel]:
        for provider in sorted(self._models):
            for name in sorted(self._models[provider]):
                yield self._models[provider][name]

    def find(self, provider: str, model: str) -> PricedModel | None:
        """The priced model ``provider``/``model`` leads to, or None (see module docs)."""
        return self._find(provider, model, None)

    def resolve(self, provider: str, model: str) -> Resolution:
        """`find` with the steps it took, in words (for ``unillm pricing show``)."""
        path: list[str] = []
        return Resolution(provider, model, self._find(provider, model, path), tuple(path))

    def snapshot_policy(self, provider: str) -> tuple[str, str | None]:
        """``(policy, file that set it)`` for ``provider``'s dated and ``-latest`` names."""
        value, file = self._settings.get(provider, {}).get("snapshots", (DEFAULT_SNAPSHOTS, None))
        return value, file

    def _find(self, provider: str, model: str, path: list[str] | None,
              seen: tuple[str, ...] = ()) -> PricedModel | None:
        hit = self._direct(provider, model, path)
        if hit is None:
            hit = self._snapshot(provider, model, path)
        table = self._priced_as.get(provider)
        if hit is None and table is not None and table != provider and table not in seen:
            if path is not None:
                path.append(f"priced as: {provider} has no entry of its own; {table}'s entries price it")
            hit = self._find(table, model, path, (*seen, provider))
        if hit is None and "/" in model:
            vendor, _, name = model.partition("/")
            if vendor in self._models and vendor != provider:
                if path is not None:
                    path.append(f"router id: {provider} {model!r} -> {vendor} {name!r}")
                hit = self._find(vendor, name, path)
        if hit is None:
            hit = self._models.get(provider, {}).get("*")
            if hit is not None and path is not None:
                path.append(f"catch-all: {_key(provider, '*')} in {hit.current.source.split(': ')[0]}")
        return hit

    def _direct(self, provider: str, model: str, path: list[str] | None) -> PricedModel | None:
        models = self._models.get(provider, {})
        if model in models and model != "*":
            if path is not None:
                path.append(f"exact: {_key(provider, model)} in {models[model].current.source.split(': ')[0]}")
                self._note_override(provider, model, path)
            return models[model]
        alias = self._aliases.get(provider, {}).get(model)
        if alias and path is not None:
            path.append(f"alias: {model!r} names {_key(provider, alias)} "
                        f"(aliases in {self._alias_origins[(provider, model)]})")
            self._note_override(provider, model, path)
        return models[alias] if alias else None

    def _note_override(self, provider: str, name: str, path: list[str]) -> None:
        if (provider, name) in self._overridden:
            path.append(f"overrides: {self._overridden[(provider, name)]} (a later file wins)")

    def _snapshot(self, provider: str, model: str, path: list[str] | None) -> PricedModel | None:
        """A dated or ``-latest`` name priced as its family, where the book says it may be."""
        snap = _SNAPSHOT.match(model)
        if snap is None:
            return None
        base = self._direct(provider, snap["base"], None)
        if base is None:
            return None
        policy, file = self.snapshot_policy(provider)
        where = f"{provider}.snapshots = {policy!r} in {file}" if file else f"default {policy!r}"
        if base.snapshots is not None:
            policy, where = base.snapshots, f"{_key(provider, base.name)}.snapshots = {base.snapshots!r}"
        if policy != "same-price":
            if path is not None:
                path.append(f"not a snapshot of {_key(provider, base.name)}: {where} (its dated and "
                            "-latest names are priced only by their own entries or aliases)")
            return None
        if path is not None:
            path.append(f"snapshot: {model!r} -> {snap['base']!r} ({where})")
            self._direct(provider, snap["base"], path)
        return base

    def price(self, provider: str, model: str, at: datetime | date | None = None) -> Price:
        """The price of ``provider``/``model`` in force at ``at`` (default: now, UTC)."""
        pm = self.find(provider, model)
        if self._overrides:
            day = _day(at)
            keys = [(provider, model)] + ([(pm.provider, pm.name)] if pm is not None else [])
            for k in dict.fromkeys(keys):  # the name as asked, then the entry it resolves to
                live = [p for p in self._overrides.get(k, ()) if p.since is not None and p.since <= day]
                if live:
                    return live[-1]
        if pm is None:
            raise errors.MissingPriceError(provider, model, self.suggest(provider, model))
        return pm.at(_day(at))

    def cost(self, provider: str, model: str, usage: Usage, at: datetime | date | None = None, *,
             units: Mapping[str, Any] | None = None) -> Cost:
        """Exact itemized cost of one call. Raises `MissingPriceError`, never returns $0 for it."""
        return self.price(provider, model, at).cost(usage, units=units)

    def suggest(self, provider: str, model: str) -> list[str]:
        tables = [provider] + ([self._priced_as[provider]] if provider in self._priced_as else [])
        own = [m for p in tables for m in self._models.get(p, {}) if m != "*"]
        own += [a for p in tables for a in self._aliases.get(p, {})]
        close = errors.did_you_mean(model, own)
        if not close:
            every = [f"{p}/{m}" for p, ms in self._models.items() for m in ms if m != "*"]
            close = errors.did_you_mean(f"{provider}/{model}", every)
        return [c if "/" in c else f"{provider}/{c}" for c in close]

    def names(self) -> list[str]:
        """Every ``provider/model`` and bare model name and alias, sorted."""
        out: set[str] = set()
        for provider, models in self._models.items():
            names = [m for m in models if m != "*"] + list(self._aliases.get(provider, {}))
            out.update(names)
            out.update(f"{provider}/{n}" for n in names)
        return sorted(out)


def today() -> date:
    """Today's UTC date: the day a call made now is priced on."""
    return datetime.now(timezone.utc).date()


def _day(at: datetime | date | None) -> date:
    if at is None:
        return today()
    if isinstance(at, datetime):
        return (at.astimezone(timezone.utc) if at.tzinfo else at).date()
    return at


@functools.lru_cache(maxsize=1)
def _bundled_book() -> PriceBook:
    return PriceBook(merge([_bundled_raw()]), _version([bundled_path()]))


@functools.lru_cache(maxsize=1)
def _bundled_names() -> tuple[str, ...]:
    return tuple(_bundled_book().names())


def bundled_model_names() -> list[str]:
    """All ``provider/model`` and bare names in the bundled book (for did-you-mean)."""
    return list(_bundled_names())
