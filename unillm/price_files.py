"""Price files: read and check one file, then merge files by name with one precedence.

A file is a *layer*: its model tables (``[P."M"]``) and its provider settings
(``[P] snapshots = "same-price" | "explicit"``). Layers merge lowest first (the
bundled ``pricing.toml``, then the user's file), and a later layer wins for every
name it defines:

* a model table it also defines merges key by key (its keys replace the earlier
  ones; lists such as ``history`` and ``aliases`` are replaced whole);
* a name it defines (as a model or as an alias) that an earlier layer used as an
  alias of another model detaches that alias: the name now means the later
  layer's entry, the earlier model keeps its other names;
* an alias it defines that names an earlier layer's model hides that model.

A conflict inside one file (an alias that is also a model of that file, an alias
given to two models) is an error naming that file and key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from . import errors
from ._toml import load_toml

TOKEN_KEYS = ("input", "cached_input", "cache_write", "cache_write_1h", "output")
#: non-token price key -> the ``units`` name the caller counts (per_call needs none)
UNIT_KEYS = {"per_call": "calls", "per_image": "images", "per_1k_chars": "chars", "per_minute": "minutes"}
UNITS = frozenset(UNIT_KEYS.values())
PRICE_KEYS = (*TOKEN_KEYS, *UNIT_KEYS)
#: how a provider's (or a model's) dated and ``-latest`` names are priced
SNAPSHOT_POLICIES = ("same-price", "explicit")
DEFAULT_SNAPSHOTS = "explicit"
_PROVIDER_KEYS = frozenset({"snapshots"})
_ENTRY_KEYS = frozenset({*PRICE_KEYS, "since", "aliases", "history", "tiers", "note",
                         "max_output_tokens", "snapshots"})
_HISTORY_KEYS = frozenset({*PRICE_KEYS, "since", "until", "tiers", "note"})
_TIER_KEYS = frozenset({"above_prompt_tokens", *TOKEN_KEYS})
_MODEL_ONLY = frozenset({"max_output_tokens", "snapshots"})

Key = tuple[str, str]


def model_key(provider: str, model: str, *rest: str) -> str:
    return ".".join((provider, f'"{model}"', *rest))


def fail(msg: str, file: str, key: str, value: Any = None) -> errors.ConfigError:
    return errors.ConfigError(msg, file=file, key=key, value=value)


# ── one file ─────────────────────────────────────────────────────────────────

@dataclass
class Layer:
    """One checked price file: model tables and provider settings (``[P] snapshots = ...``)."""

    file: str
    tables: dict[Key, dict[str, Any]] = field(default_factory=dict)
    settings: dict[str, dict[str, str]] = field(default_factory=dict)


def read_layer(path: str | Path, label: str | None = None) -> Layer:
    """Parse and check one price file. Tables may be partial (an override sets only what it
    changes); completeness is checked once files are merged."""
    file = label or str(path)
    layer = Layer(file)
    for provider, models in load_toml(path, decimal=True).items():
        if not isinstance(models, Mapping):
            raise fail('must be a table of models, e.g. [openai."gpt-4o"]', file, provider, models)
        for name, value in models.items():
            if not isinstance(value, Mapping):  # a provider setting, e.g. [mistral] snapshots = ...
                layer.settings.setdefault(provider, {})[name] = _check_setting(value, file, provider, name)
                continue
            layer.tables[(provider, name)] = _check_table(value, _ENTRY_KEYS, file, model_key(provider, name))
    _check_names(layer)
    return layer


def read_price_file(path: str | Path) -> dict[Key, dict[str, Any]]:
    """``{(provider, model): checked table}`` of one price file (see `read_layer`)."""
    return read_layer(path).tables


def _check_setting(value: Any, file: str, provider: str, name: str) -> str:
    key = f"{provider}.{name}"
    if name not in _PROVIDER_KEYS:
        raise fail("unknown provider setting (a model is a table: [provider.\"model\"]); valid: "
                   + ", ".join(sorted(_PROVIDER_KEYS)), file, key, value)
    return _check_policy(value, file, key)


def _check_policy(value: Any, file: str, key: str) -> str:
    if value not in SNAPSHOT_POLICIES:
        raise fail(f"must be one of {', '.join(map(repr, SNAPSHOT_POLICIES))}, got {value!r}", file, key, value)
    return str(value)


def _check_number(value: Any, file: str, key: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal)):
        raise fail(f"must be a number (USD), got {value!r}", file, key, value)
    number = Decimal(value)
    if not number.is_finite():
        raise fail(f"must be a finite number, got {number}", file, key, number)
    if number < 0:
        raise fail(f"a price cannot be negative (got {number})", file, key, number)
    return number


def _check_date(value: Any, file: str, key: str) -> date:
    if isinstance(value, datetime):
        raise fail(f"must be a date (YYYY-MM-DD), not a date-time: {value}", file, key, value)
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise fail(f"must be a date written YYYY-MM-DD, got {value!r}", file, key, value)


def _check_keys(table: Mapping[str, Any], allowed: frozenset[str], file: str, key: str) -> None:
    for name in table:
        if name in _MODEL_ONLY and name not in allowed:
            raise fail("belongs to the model's own table, not to a history entry or tier (it does "
                       "not change with the price)", file, f"{key}.{name}", name)
        if name not in allowed:
            close = errors.did_you_mean(name, sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f"; valid: {', '.join(sorted(allowed))}"
            raise fail("unknown key" + hint, file, f"{key}.{name}", name)


def _check_table(table: Any, allowed: frozenset[str], file: str, key: str) -> dict[str, Any]:
    """Shape and value checks of a model, history or tier table (not completeness)."""
    if not isinstance(table, Mapping):
        raise fail("must be a table", file, key, table)
    _check_keys(table, allowed, file, key)
    out: dict[str, Any] = {}
    for name, value in table.items():
        k = f"{key}.{name}"
        if name in PRICE_KEYS:
            out[name] = _check_number(value, file, k)
        elif name in ("since", "until"):
            out[name] = _check_date(value, file, k)
        elif name in ("above_prompt_tokens", "max_output_tokens"):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise fail(f"must be a positive whole number of tokens, got {value!r}", file, k, value)
            out[name] = value
        elif name == "aliases":
            if not isinstance(value, list) or not all(isinstance(a, str) and a for a in value):
                raise fail("must be a list of model names", file, k, value)
            out[name] = list(value)
        elif name == "snapshots":
            out[name] = _check_policy(value, file, k)
        elif name == "note":
            if not isinstance(value, str):
                raise fail("must be a string", file, k, value)
            out[name] = value
        elif name in ("history", "tiers"):
            if not isinstance(value, list):
                raise fail(f"must be an array of tables ([[...{name}]])", file, k, value)
            sub = _HISTORY_KEYS if name == "history" else _TIER_KEYS
            out[name] = [_check_table(t, sub, file, f"{k}[{i}]") for i, t in enumerate(value)]
    return out


def _check_names(layer: Layer) -> None:
    """Inside one file a name means one thing: no alias is also a model or another's alias."""
    owner: dict[Key, str] = {}
    for (provider, model), table in layer.tables.items():
        for alias in table.get("aliases", ()):
            key = model_key(provider, model, "aliases")
            if (provider, alias) in layer.tables:
                raise fail(f"alias {alias!r} is also a priced model of {provider} in this file",
                           layer.file, key, alias)
            if (provider, alias) in owner and owner[(provider, alias)] != model:
                raise fail(f"alias {alias!r} already names {provider}/{owner[(provider, alias)]} "
                           "in this file", layer.file, key, alias)
            owner[(provider, alias)] = model


# ── merging files ────────────────────────────────────────────────────────────

@dataclass
class Merged:
    """Layers merged by name (see the module docs): what the book is built from."""

    tables: dict[Key, dict[str, Any]]
    origins: dict[Key, str]                 # file label of each model's entry
    aliases: dict[Key, str]                 # (provider, alias) -> model it names
    alias_origins: dict[Key, str]           # (provider, alias) -> file that gave it
    settings: dict[str, dict[str, tuple[str, str]]]  # provider -> setting -> (value, file)
    overridden: dict[Key, str]              # (provider, name) -> what a later file replaced


def merge(layers: list[Layer]) -> Merged:
    """Merge ``layers`` (lowest precedence first) by name; see the module docs."""
    tables: dict[Key, dict[str, Any]] = {}
    origins: dict[Key, str] = {}
    rank: dict[Key, int] = {}          # model -> the last layer that defined it
    alias_rank: dict[Key, int] = {}    # model -> the layer its aliases list came from
    alias_file: dict[Key, str] = {}
    settings: dict[str, dict[str, tuple[str, str]]] = {}
    for i, layer in enumerate(layers):
        for k, table in layer.tables.items():
            origins[k] = f"{layer.file} (over {origins[k]})" if k in tables else layer.file
            tables[k] = {**tables.get(k, {}), **table}
            rank[k] = i
            if "aliases" in table or k not in alias_rank:
                alias_rank[k], alias_file[k] = i, layer.file
        for provider, values in layer.settings.items():
            settings.setdefault(provider, {}).update({n: (v, layer.file) for n, v in values.items()})
    # who holds each name: (layer, the model an alias names or None for a model itself, file)
    claims: dict[Key, tuple[int, str | None, str]] = {k: (r, None, origins[k]) for k, r in rank.items()}
    overridden: dict[Key, str] = {}
    for (provider, model), table in tables.items():
        for alias in table.get("aliases", ()):
            k = (provider, alias)
            mine = (alias_rank[(provider, model)], model, alias_file[(provider, model)])
            held = claims.get(k)
            if held is not None and held[0] >= mine[0]:   # a later file (or the model itself) holds it
                overridden[k] = _claim(provider, alias, mine)
                continue
            if held is not None:
                overridden[k] = _claim(provider, alias, held)
            claims[k] = mine
    aliases = {k: m for k, (_, m, _) in claims.items() if m is not None}
    for k in aliases:
        tables.pop(k, None)      # a model a later file's alias hides
    for (provider, model), table in tables.items():
        if "aliases" in table:
            table["aliases"] = [a for a in table["aliases"] if aliases.get((provider, a)) == model]
    alias_origins = {k: alias_file[(k[0], m)] for k, m in aliases.items()}
    return Merged(tables, {k: origins[k] for k in tables}, aliases, alias_origins, settings, overridden)


def _claim(provider: str, name: str, claim: tuple[int, str | None, str]) -> str:
    _, model, file = claim
    return f"model {provider}/{name} in {file}" if model is None else f"alias of {provider}/{model} in {file}"
