"""``unillm.toml`` -> a validated `Settings` object.

Top-level keys are settings; tables are collections. ``Client(**kwargs)`` takes
the same names; keyword arguments win over the file. An unknown key, a wrong type
or a bad value is a `ConfigError` naming the file, the key and the value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StrictBool, ValidationError, field_validator

from . import errors
from ._toml import combine_errors, load_toml, pydantic_error_to_config_error


class RetrySettings(BaseModel):
    """Backoff for retryable errors: exponential with jitter, ``Retry-After`` honoured."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    initial: float = Field(default=0.5, ge=0)       # seconds before the first retry
    maximum: float = Field(default=30.0, ge=0)      # cap of one wait
    jitter: float = Field(default=0.5, ge=0)        # up to this many seconds added at random
    max_retry_after: float = Field(default=60.0, ge=0)  # a longer Retry-After fails instead


class FallbackSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    model: str
    then: list[str] = Field(min_length=1)


class AlertSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    webhook: str | None = None

    @field_validator("webhook")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is None:
            return v
        from urllib.parse import urlsplit
        try:
            parts = urlsplit(v)
            ok = parts.scheme in ("http", "https") and bool(parts.hostname) and v.isprintable()
        except ValueError:
            ok = False
        if not ok:
            raise ValueError("must be an http:// or https:// URL with a host, like 'https://hooks.example/unillm'")
        return v


#: tags only the gateway sets (from the caller's key); never accepted from a caller
RESERVED_TAGS = frozenset({"user", "project", "key_id"})


class ServerSettings(BaseModel):
    """``[server]``: what ``unillm serve`` lets its callers do, and the limits it enforces.

    Every default is the safe one: a tenant may choose nothing the operator did not allow.
    The README's "Security" section lists each limit and what a caller gets past it.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)
    allow_extra: list[str] = Field(default_factory=list)   # `extra` keys callers may send
    allow_tags: list[str] = Field(default_factory=list)    # tag names callers may set (`metadata`)
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)  # larger bodies: 413
    max_json_depth: int = Field(default=64, gt=0)          # deeper JSON: 400
    header_timeout: float = Field(default=10.0, gt=0)      # seconds to receive the headers (408)
    body_timeout: float = Field(default=60.0, gt=0)        # seconds to receive the body (408)
    max_concurrent_per_key: int | None = Field(default=None, gt=0)
    cors_origins: list[str] = Field(default_factory=list)  # CORS is off unless listed
    session_seconds: float = Field(default=8 * 3600, gt=0)  # a dashboard login lasts this long
    usage_window_seconds: float = Field(default=7 * 86400, gt=0)  # POST /v1/usage timestamps
    ratelimit: str | None = None    # "redis://..." to share limits through Redis; default the ledger

    @field_validator("allow_tags")
    @classmethod
    def _no_reserved_tags(cls, names: list[str]) -> list[str]:
        reserved = sorted(set(names) & RESERVED_TAGS)
        if reserved:
            raise ValueError(f"{reserved[0]!r} is set from the caller's API key and cannot be "
                             f"allowed to callers (reserved: {', '.join(sorted(RESERVED_TAGS))})")
        return names


class Settings(BaseModel):
    """Everything a Client is configured with, validated once."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    ledger: str | None = None            # "sqlite:///abs.db", "sqlite:rel.db", "postgresql://...", "off"
    cache: str | None = None             # "disk", "disk:///path", "memory", "redis://...", "off"; None = none
    cache_sampled: StrictBool = True     # false: cache only deterministic requests (temperature=0)
    cache_ttl: float | None = Field(default=None, gt=0)  # default lifetime of stored answers, seconds
    cache_namespace: str = "default"
    pricing: str | None = None           # a price file merged over the bundled pricing.toml
    on_missing_price: Literal["raise", "record"] = "raise"
    tags: dict[str, str] = Field(default_factory=dict)
    providers: dict[str, dict[str, Any]] = Field(default_factory=dict)
    aliases: dict[str, str] = Field(default_factory=dict)
    rules: list[dict[str, Any]] = Field(default_factory=list)
    fallbacks: list[FallbackSpec] = Field(default_factory=list)
    budgets: list[dict[str, Any]] = Field(default_factory=list)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    log_content: StrictBool = False
    drop_params: StrictBool | Literal["warn"] = "warn"   # "warn": drop and warn once; true: silently
    timezone: str = "UTC"
    # hard overall limits, in seconds from the call's start, retries and fallbacks included:
    # a stream still open after `stream_deadline` is cut (recorded as partial), an async call
    # still running after `call_deadline` is cancelled; past its deadline no call's budget
    # hold is renewed, so it is counted at its worst case until the call settles
    call_deadline: float | None = Field(default=1800.0, gt=0)
    stream_deadline: float | None = Field(default=3600.0, gt=0)

    # where the settings came from, for error messages and relative paths
    source: str = Field(default="Client(...)", exclude=True)

    @field_validator("providers")
    @classmethod
    def _secret_keys(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """Provider keys (and credential headers) become `SecretStr`: ``repr(settings)`` and
        ``model_dump_json()`` show ``**********``; `profiles.build_settings` reveals them."""
        return {name: _secret_table(table) for name, table in v.items()}

    @field_validator("drop_params", mode="before")
    @classmethod
    def _drop(cls, v: Any) -> Any:
        if v is True or v is False or v == "warn":
            return v
        raise ValueError('must be true, false or "warn"')

    @field_validator("cache_namespace")
    @classmethod
    def _namespace(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must be a non-empty name")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            close = errors.did_you_mean(v, _zone_names())
            hint = f"did you mean {close[0]!r}?" if close else "use an IANA name like 'Europe/Paris' or 'UTC'"
            raise ValueError(f"unknown timezone; {hint}") from None
        return v

    @field_validator("cache")
    @classmethod
    def _cache_url(cls, v: str | None) -> str | None:
        if v is not None:
            from .cache import check_cache_url
            _as_value_error(check_cache_url, v)
        return v

    @field_validator("ledger")
    @classmethod
    def _ledger_url(cls, v: str | None) -> str | None:
        if v is not None and v.strip().lower().startswith("sqlite:"):
            from .ledger.urls import sqlite_url
            _as_value_error(lambda u: sqlite_url(u, check=True), v)
        elif v is not None and "\x00" in v:
            raise ValueError("contains a NUL byte")
        return v

    @field_validator("pricing")
    @classmethod
    def _pricing_file(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or "\x00" in v or Path(v).is_dir()):
            raise ValueError("must be the path of a price file (TOML)")
        return v


def _secret_table(table: Any) -> Any:
    if not isinstance(table, dict):
        return table  # build_settings names the bad table
    out = dict(table)
    if isinstance(out.get("api_key"), str):
        out["api_key"] = SecretStr(out["api_key"])
    if isinstance(out.get("headers"), dict):
        from .profiles import is_secret_header
        out["headers"] = {k: SecretStr(v) if isinstance(v, str) and is_secret_header(k) else v
                          for k, v in out["headers"].items()}
    return out


def _as_value_error(check: Callable[[str], Any], value: str) -> None:
    """Run a checker that raises ConfigError; pydantic collects ValueErrors with the rest."""
    try:
        check(value)
    except errors.ConfigError as exc:
        message = str(exc)
        for prefix in (f"{exc.file}: " if exc.file else "", f"{exc.key}: " if exc.key else ""):
            message = message.removeprefix(prefix)
        raise ValueError(message) from None


def _zone_names() -> list[str]:
    from zoneinfo import available_timezones
    return sorted(available_timezones())


def load_settings(path: str | Path | None = None, *, source: str | None = None,
                  base: Mapping[str, Any] | None = None, deep: bool = False, **overrides: Any) -> Settings:
    """Read ``path`` (if given), apply keyword overrides, validate everything in one pass.

    Every problem found (top-level keys, ``[providers.X]``, ``[[budgets]]``, ``[[rules]]``)
    is reported in one `ConfigError`; each names the file and the key, with did-you-mean.
    ``base`` (settings already loaded) takes the place of a file. ``deep`` (what `Client`
    asks for) also checks ``[providers.X]``, ``[[budgets]]``, ``[[rules]]`` and each rule's
    target, so a file's mistakes are all reported at once; without it they are left to
    their own parsers (``unillm rules lint`` and ``pricing check`` report them as findings).
    """
    data: dict[str, Any] = dict(base or {})
    source = source or "Client(...)"
    if path is not None:
        path = Path(path)
        data = load_toml(path)
        source = str(path)
        _relative_to(data, path.parent)
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "providers" and isinstance(value, Mapping) and isinstance(data.get("providers"), Mapping):
            merged = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data["providers"].items()}
            for name, table in value.items():
                old = merged.get(name)
                merged[name] = {**old, **table} if isinstance(old, Mapping) and isinstance(table, Mapping) \
                    else table
            data["providers"] = merged
        else:
            data[key] = value
    return validate(data, source, deep=deep)


def validate(data: Mapping[str, Any], source: str, *, deep: bool = False) -> Settings:
    """``data`` as `Settings`, or one ConfigError listing every problem."""
    problems: list[errors.ConfigError] = []
    settings: Settings | None = None
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        problems.append(pydantic_error_to_config_error(exc, file=source, model=Settings))
    except TypeError as exc:  # keyword names that are not strings
        problems.append(errors.ConfigError(f"bad setting names: {exc}", file=source))
    if deep:
        problems += _collection_problems(data, source)
    if problems:
        raise combine_errors(problems, file=source)
    assert settings is not None
    settings.source = source
    return settings


def _relative_to(data: dict[str, Any], base: Path) -> None:
    """A relative pricing file or ``sqlite:relative.db`` is relative to the config file."""
    pricing = data.get("pricing")
    if isinstance(pricing, str) and pricing.strip() and not Path(pricing).is_absolute():
        data["pricing"] = str(base / pricing)
    ledger = data.get("ledger")
    if isinstance(ledger, str) and ledger.lower().startswith("sqlite:") and not ledger[7:].startswith("/") \
            and ledger[7:].strip() and not ledger[7:].startswith(":memory:") and "\x00" not in ledger:
        head, sep, query = ledger.partition("?")
        data["ledger"] = "sqlite:///" + str((base / head[7:]).resolve()).lstrip("/") + sep + query


def _collection_problems(data: Mapping[str, Any], source: str) -> list[errors.ConfigError]:
    """``[providers.X]``, ``[[budgets]]`` and ``[[rules]]`` checked by their own parsers,
    each independently, so that one file's mistakes are all reported together."""
    problems: list[errors.ConfigError] = []
    timezone = data.get("timezone", "UTC")
    try:
        Settings._zone(timezone)
    except (ValueError, TypeError):
        timezone = "UTC"  # reported by Settings; the rules are still checked
    checks: dict[str, Callable[[], Any]] = {}
    providers = data.get("providers")
    if isinstance(providers, Mapping) and all(isinstance(v, Mapping) for v in providers.values()):
        from .profiles import build_settings
        checks["providers"] = lambda: build_settings(providers, source=source)
    budgets = data.get("budgets")
    if isinstance(budgets, list) and budgets:
        from .budgets import parse_budgets
        checks["budgets"] = lambda: parse_budgets(budgets, source)
    rules = data.get("rules")
    if isinstance(rules, list) and rules:
        from .rules import RuleSet
        checks["rules"] = lambda: RuleSet.from_config(rules, source=source, timezone=timezone)
    results: dict[str, Any] = {}
    for name, check in checks.items():
        try:
            results[name] = check()
        except errors.ConfigError as exc:
            problems.append(exc)
    if not problems and results.get("rules") and any(rule.use for rule in results["rules"]):
        problems += _rule_target_problems(data, results.get("providers"), results["rules"], source)
    return problems


def _rule_target_problems(data: Mapping[str, Any], providers: Any, ruleset: Any,
                          source: str) -> list[errors.ConfigError]:
    """Every rule's ``use`` resolves and is priced (unless ``on_missing_price = "record"``)."""
    from .pricing import PriceBook
    from .profiles import Resolver, build_settings
    from .rules.spec import check_targets
    if not isinstance(providers, dict):
        providers = build_settings(None, source=source)
    aliases = data.get("aliases") or {}
    resolver = Resolver(providers, aliases if isinstance(aliases, Mapping) else {})
    if data.get("on_missing_price") == "record":
        def price(ref: Any) -> Any:
            return None
    else:
        book = PriceBook.load(data.get("pricing"))
        def price(ref: Any) -> Any:
            return book.price(ref.provider, ref.model)
    return check_targets(ruleset, resolver.resolve, price, source=source)


def naming_file(open_: Callable[[], Any], source: str) -> Any:
    """``open_()``; a ConfigError it raises (a ledger or cache that cannot be opened) names
    the config file the URL came from."""
    try:
        return open_()
    except errors.ConfigError as exc:
        if exc.file:
            raise
        message = str(exc).removeprefix(f"{exc.key}: ") if exc.key else str(exc)
        raise errors.ConfigError(message, file=source, key=exc.key, value=exc.value) from None


__all__ = ["Settings", "ServerSettings", "RetrySettings", "FallbackSpec", "AlertSettings", "RESERVED_TAGS", "load_settings", "validate", "naming_file",
           "errors"]
