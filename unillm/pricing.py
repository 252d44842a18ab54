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

Lookup of ``(provider, model)``: exact -> alias -> dated snapshot
(``claude-sonnet-4-5-20250929``, ``gpt-4o-2024-08-06``, ``gemini-2.0-flash-001``,
``command-r-08-2024``, ``*-latest``) -> ``vendor/model`` ids of routers
(``openrouter`` ``openai/gpt-4o`` -> ``openai."gpt-4o"``) -> ``P."*"`` ->
`MissingPriceError`. A user file merges over the bundled book key by key
(a model table's keys replace the bundled ones; lists such as ``history``
are replaced whole).
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Context, Decimal, Inexact, InvalidOperation, Overflow, localcontext
from pathlib import Path
from typing import Any

from . import errors
from ._toml import load_toml
from .types import Cost, Usage

__all__ = ["PriceBook", "Price", "Tier", "PricedModel", "bundled_model_names", "bundled_path",
           "read_price_file", "UNITS"]

TOKEN_KEYS = ("input", "cached_input", "cache_write", "cache_write_1h", "output")
#: non-token price key -> the ``units`` name the caller counts (per_call needs none)
UNIT_KEYS = {"per_call": "calls", "per_image": "images", "per_1k_chars": "chars", "per_minute": "minutes"}
UNITS = frozenset(UNIT_KEYS.values())
_PRICE_KEYS = (*TOKEN_KEYS, *UNIT_KEYS)
_ENTRY_KEYS = frozenset({*_PRICE_KEYS, "since", "aliases", "history", "tiers", "note",
                         "max_output_tokens"})
_HISTORY_KEYS = frozenset({*_PRICE_KEYS, "since", "until", "tiers", "note"})
_TIER_KEYS = frozenset({"above_prompt_tokens", *TOKEN_KEYS})

_SNAPSHOT = re.compile(r"^(?P<base>.+?)(?:-\d{4}-\d{2}-\d{2}|-\d{8}|-\d{2}-\d{4}|-\d{4}|-\d{3}|-latest)$")
_EXACT = Context(prec=200, traps=[Inexact, Overflow, InvalidOperation])
_MILLION = 6


def bundled_path() -> Path:
    """The bundled ``pricing.toml`` (inside the wheel, or at the repository root)."""
    from .profiles import data_dir
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
        tier = self.tier_for(usage.prompt_tokens)
        rates: Price | Tier = tier or self
        cached = rates.cached_input if rates.cached_input is not None else rates.input
        write = rates.cache_write if rates.cache_write is not None else rates.input
        write_1h = rates.cache_write_1h if rates.cache_write_1h is not None else write
        written_5m = usage.cache_write_tokens - usage.cache_write_1h_tokens
        with localcontext(_EXACT):
            return Cost(
                input_usd=_per_million(usage.input_tokens, rates.input),
                cache_read_usd=_per_million(usage.cache_read_tokens, cached),
                cache_write_usd=(_per_million(written_5m, write)
                                 + _per_million(usage.cache_write_1h_tokens, write_1h)),
                output_usd=_per_million(usage.output_tokens, rates.output),
                other_usd=self._units_cost(units or {}),
                tier=tier.label if tier else None,
                price_version=f"{self.book_version} {self.source}".strip(),
            )

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
    return (rate * tokens).scaleb(-_MILLION) if tokens else Decimal(0)


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


# ── reading and validating one file ──────────────────────────────────────────

def _key(provider: str, model: str, *rest: str) -> str:
    return ".".join((provider, f'"{model}"', *rest))


def _fail(msg: str, file: str, key: str, value: Any = None) -> errors.ConfigError:
    return errors.ConfigError(msg, file=file, key=key, value=value)


def _check_number(value: Any, file: str, key: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise _fail(f"must be a number (USD), got {value!r}", file, key, value)
    value = Decimal(value)
    if not value.is_finite():
        raise _fail(f"must be a finite number, got {value}", file, key, value)
    if value < 0:
        raise _fail(f"a price cannot be negative (got {value})", file, key, value)
    return value


def _check_date(value: Any, file: str, key: str) -> date:
    if isinstance(value, datetime):
        raise _fail(f"must be a date (YYYY-MM-DD), not a date-time: {value}", file, key, value)
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise _fail(f"must be a date written YYYY-MM-DD, got {value!r}", file, key, value)


def _check_keys(table: Mapping[str, Any], allowed: frozenset[str], file: str, key: str) -> None:
    for name in table:
        if name == "max_output_tokens" and name not in allowed:
            raise _fail("belongs to the model's own table, not to a history entry or tier (it does "
                        "not change with the price)", file, f"{key}.{name}", name)
        if name not in allowed:
            close = errors.did_you_mean(name, sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; valid: {', '.join(sorted(allowed))}"
            raise _fail("unknown key" + hint, file, f"{key}.{name}", name)


def _check_table(table: Any, allowed: frozenset[str], file: str, key: str) -> dict[str, Any]:
    """Shape and value checks of a model, history or tier table (not completeness)."""
    if not isinstance(table, Mapping):
        raise _fail("must be a table", file, key, table)
    _check_keys(table, allowed, file, key)
    out: dict[str, Any] = {}
    for name, value in table.items():
        k = f"{key}.{name}"
        if name in _PRICE_KEYS:
            out[name] = _check_number(value, file, k)
        elif name in ("since", "until"):
            out[name] = _check_date(value, file, k)
        elif name in ("above_prompt_tokens", "max_output_tokens"):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise _fail(f"must be a positive whole number of tokens, got {value!r}", file, k, value)
            out[name] = value
        elif name == "aliases":
            if not isinstance(value, list) or not all(isinstance(a, str) and a for a in value):
                raise _fail("must be a list of model names", file, k, value)
            out[name] = list(value)
        elif name == "note":
            if not isinstance(value, str):
                raise _fail("must be a string", file, k, value)
            out[name] = value
        elif name in ("history", "tiers"):
            if not isinstance(value, list):
                raise _fail(f"must be an array of tables ([[...{name}]])", file, k, value)
            sub = _HISTORY_KEYS if name == "history" else _TIER_KEYS
            out[name] = [_check_table(t, sub, file, f"{k}[{i}]") for i, t in enumerate(value)]
    return out


def read_price_file(path: str | Path) -> dict[tuple[str, str], dict[str, Any]]:
    """Parse and check one price file: ``{(provider, model): checked table}``.

    Tables may be partial (an override file sets only what it changes);
    completeness is checked once files are merged.
    """
    file = str(path)
    raw = load_toml(path, decimal=True)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for provider, models in raw.items():
        if not isinstance(models, Mapping):
            raise _fail('must be a table of models, e.g. [openai."gpt-4o"]', file, provider, models)
        for model, table in models.items():
            out[(provider, model)] = _check_table(table, _ENTRY_KEYS, file, _key(provider, model))
    return out


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
    current = {k: v for k, v in t.items() if k not in ("history", "aliases", "note", "max_output_tokens")}
    entries = (*history, _build_price(provider, model, current, file, key, version, max_output))
    for before, after in zip(entries, entries[1:]):
        start = after.since or before.until
        if before.until is not None and start is not None and start < before.until:
            raise _fail(f"price dates overlap: {before.source.split(': ', 1)[1]} runs until "
                        f"{before.until} but the next price starts {start}", file, key)
        if before.until == after.until:
            raise _fail(f"two history entries end on {before.until}", file, key)
    return PricedModel(provider, model, entries, tuple(t.get("aliases", ())))


def _version(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for p in paths:
        digest.update(p.name.encode() + b"\0" + p.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


@functools.lru_cache(maxsize=1)
def _bundled_raw() -> tuple[dict[tuple[str, str], dict[str, Any]], str]:
    path = bundled_path()
    return read_price_file(path), str(path.name)


class PriceBook:
    """Prices by provider and model, in force by date; `cost` turns usage into money."""

    def __init__(self, tables: Mapping[tuple[str, str], dict[str, Any]],
                 origins: Mapping[tuple[str, str], str], version: str) -> None:
        self.version = version
        self._models: dict[str, dict[str, PricedModel]] = {}
        self._aliases: dict[str, dict[str, str]] = {}
        for (provider, model), table in tables.items():
            pm = _build_model(provider, model, table, origins[(provider, model)], version)
            self._models.setdefault(provider, {})[model] = pm
        for provider, models in self._models.items():
            aliases = self._aliases.setdefault(provider, {})
            for pm in models.values():
                for alias in pm.aliases:
                    key = _key(provider, pm.name, "aliases")
                    file = origins[(provider, pm.name)]
                    if alias in models:
                        raise _fail(f"alias {alias!r} is also a priced model of {provider}", file, key)
                    if alias in aliases:
                        raise _fail(f"alias {alias!r} already names {provider}/{aliases[alias]}", file, key)
                    aliases[alias] = pm.name

    # ── loading ──
    @classmethod
    def load(cls, user_file: str | Path | None = None) -> PriceBook:
        """The bundled book, with ``user_file`` (if any) merged over it key by key."""
        if user_file is None:
            return _bundled_book()
        bundled, bundled_name = _bundled_raw()
        user = read_price_file(user_file)
        tables = {k: dict(v) for k, v in bundled.items()}
        origins = dict.fromkeys(bundled, bundled_name)
        for k, table in user.items():
            origins[k] = f"{user_file} (over {bundled_name})" if k in tables else str(user_file)
            tables[k] = {**tables.get(k, {}), **table}
        return cls(tables, origins, _version([bundled_path(), Path(user_file)]))

    @classmethod
    def from_file(cls, path: str | Path) -> PriceBook:
        """A book made of ``path`` alone (no bundled prices), e.g. for ``pricing diff``."""
        tables = read_price_file(path)
        return cls(tables, dict.fromkeys(tables, str(path)), _version([Path(path)]))

    # ── lookup ──
    def providers(self) -> list[str]:
        return sorted(self._models)

    def models(self) -> Iterator[PricedModel]:
        for provider in sorted(self._models):
            for name in sorted(self._models[provider]):
                yield self._models[provider][name]

    def find(self, provider: str, model: str) -> PricedModel | None:
        """The priced model ``provider``/``model`` leads to, or None (see module docs)."""
        hit = self._direct(provider, model)
        if hit is None:
            snap = _SNAPSHOT.match(model)
            hit = self._direct(provider, snap["base"]) if snap else None
        if hit is None and "/" in model:
            vendor, _, name = model.partition("/")
            if vendor in self._models and vendor != provider:
                hit = self.find(vendor, name)
        if hit is None:
            hit = self._models.get(provider, {}).get("*")
        return hit

    def _direct(self, provider: str, model: str) -> PricedModel | None:
        models = self._models.get(provider, {})
        if model in models and model != "*":
            return models[model]
        alias = self._aliases.get(provider, {}).get(model)
        return models[alias] if alias else None

    def price(self, provider: str, model: str, at: datetime | date | None = None) -> Price:
        """The price of ``provider``/``model`` in force at ``at`` (default: now, UTC)."""
        pm = self.find(provider, model)
        if pm is None:
            raise errors.MissingPriceError(provider, model, self.suggest(provider, model))
        return pm.at(_day(at))

    def cost(self, provider: str, model: str, usage: Usage, at: datetime | date | None = None, *,
             units: Mapping[str, Any] | None = None) -> Cost:
        """Exact itemized cost of one call. Raises `MissingPriceError`, never returns $0 for it."""
        return self.price(provider, model, at).cost(usage, units=units)

    def suggest(self, provider: str, model: str) -> list[str]:
        own = [m for m in self._models.get(provider, {}) if m != "*"]
        own += list(self._aliases.get(provider, {}))
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


def _day(at: datetime | date | None) -> date:
    if at is None:
        return datetime.now(timezone.utc).date()
    if isinstance(at, datetime):
        return (at.astimezone(timezone.utc) if at.tzinfo else at).date()
    return at


@functools.lru_cache(maxsize=1)
def _bundled_book() -> PriceBook:
    tables, name = _bundled_raw()
    return PriceBook(tables, dict.fromkeys(tables, name), _version([bundled_path()]))


@functools.lru_cache(maxsize=1)
def _bundled_names() -> tuple[str, ...]:
    return tuple(_bundled_book().names())


def bundled_model_names() -> list[str]:
    """All ``provider/model`` and bare names in the bundled book (for did-you-mean)."""
    return list(_bundled_names())
