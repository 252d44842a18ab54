"""``unillm.toml`` -> a validated `Settings` object.

Top-level keys are settings; tables are collections. ``Client(**kwargs)`` takes
the same names; keyword arguments win over the file. An unknown key, a wrong type
or a bad value is a `ConfigError` naming the file, the key and the value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    StrictBool,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from . import errors
from ._toml import combine_errors, config_errors, load_toml
from .budgets.alerts import WEBHOOK_EVENTS
from .budgets.spec import BudgetSpec
from .metering.apis import ApiSpec
from .profiles import ProviderSettings, bundled_profiles, profile_fields
from .routing.spec import DeploymentSpec, RoutingSettings
from .rules.spec import Rule, nested_rules, rule_label


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


def _webhook_url(v: str) -> str:
    from urllib.parse import urlsplit
    try:
        parts = urlsplit(v)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname) and v.isprintable()
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("must be an http:// or https:// URL with a host, like 'https://hooks.example/unillm'")
    return v


WebhookURL = Annotated[str, AfterValidator(_webhook_url)]


class WebhookSettings(BaseModel):
    """One ``[[alerts.webhooks]]``: signed POSTs of the ``events`` listed, through the outbox
    in the ledger's database (`unillm.webhooks`)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    url: WebhookURL
    events: list[str] = Field(default_factory=lambda: list(WEBHOOK_EVENTS))  # default: every event
    secret: str | None = Field(default=None, min_length=16, repr=False)  # HMAC-SHA256 key
    timeout: float = Field(default=5.0, gt=0)          # seconds per delivery attempt
    max_attempts: int = Field(default=12, gt=0)        # then the row is marked failed
    retry_initial: float = Field(default=1.0, gt=0)    # first backoff, doubled each attempt
    retry_max: float = Field(default=600.0, gt=0)      # cap of one backoff

    @field_validator("events")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in WEBHOOK_EVENTS:
                close = errors.did_you_mean(name, WEBHOOK_EVENTS)
                hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(WEBHOOK_EVENTS)}"
                raise ValueError(f"unknown event {name!r}; {hint}")
        if not names:
            raise ValueError(f"lists no event; known: {', '.join(WEBHOOK_EVENTS)}")
        return names


class AlertSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)
    webhook: WebhookURL | None = None   # budget events, unsigned, retried in memory (as before)
    webhooks: list[WebhookSettings] = Field(default_factory=list)


class MetricsSettings(BaseModel):
    """``[server.metrics]``: Prometheus ``GET /metrics`` (``pip install 'unillm[metrics]'``)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    enabled: StrictBool = False                           # off: no route, nothing counted
    allow_from: list[str] = Field(default_factory=list)  # networks scraping without a key (CIDR)

    @field_validator("allow_from")
    @classmethod
    def _networks(cls, nets: list[str]) -> list[str]:
        import ipaddress
        for net in nets:
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                raise ValueError(f"{net!r} is not a network; use CIDR like '10.0.0.0/8' or "
                                 "'127.0.0.1/32'") from None
        return nets


#: tags only the gateway sets (from the caller's key); never accepted from a caller
RESERVED_TAGS = frozenset({"user", "project", "key_id"})


class Upstream(BaseModel):
    """``[[server.upstreams]]``: a base URL ``/proxy`` may forward to, and the credential it
    injects (so tenants never hold the vendor's key). ``auth``: how the key is sent —
    ``bearer`` (``Authorization: Bearer``), ``x-api-key`` (Anthropic), ``x-goog-api-key``
    (Gemini), ``header:NAME``, or ``none``. A private or loopback address is reachable only
    when the base URL names it (an IP literal or ``localhost``) or ``allow_private = true``."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    name: str = Field(min_length=1)
    base_url: str
    auth: str = "none"
    api_key: SecretStr | None = None
    api_key_env: str | None = None
    allow_private: StrictBool = False

    @field_validator("base_url")
    @classmethod
    def _base(cls, v: str) -> str:
        from urllib.parse import urlsplit
        try:
            parts = urlsplit(v)
            ok = (parts.scheme in ("http", "https") and bool(parts.hostname) and v.isprintable()
                  and not parts.query and not parts.fragment and "@" not in parts.netloc)
            parts.port  # noqa: B018 - a bad port raises here
        except ValueError:
            ok = False
        if not ok:
            raise ValueError("must be an http(s) URL with a host and no query, like 'https://api.anthropic.com'")
        return v.rstrip("/")

    @field_validator("auth")
    @classmethod
    def _auth(cls, v: str) -> str:
        if v in ("none", "bearer", "x-api-key", "x-goog-api-key") or (v.startswith("header:") and v[7:].strip()):
            return v
        raise ValueError("must be none, bearer, x-api-key, x-goog-api-key or header:NAME")

    def key(self) -> str | None:
        import os
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        return os.environ.get(self.api_key_env) if self.api_key_env else None


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
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    upstreams: list[Upstream] = Field(default_factory=list)  # where /proxy may forward (none: off)
    # a kept-alive connection idles this long: longer than client pools keep one (httpx 5 s,
    # aiohttp 15 s, Go 90 s, load balancers 60 s), so the gateway never closes under a request
    keep_alive_seconds: float = Field(default=120.0, gt=0)
    max_concurrent_requests: int = Field(default=1024, gt=0)  # served at once per process; more wait
    max_queued_requests: int = Field(default=1024, ge=0)      # waiting beyond that: 503 + Retry-After
    queue_timeout: float = Field(default=30.0, gt=0)          # seconds one may wait: then 503

    @field_validator("allow_tags")
    @classmethod
    def _no_reserved_tags(cls, names: list[str]) -> list[str]:
        reserved = sorted(set(names) & RESERVED_TAGS)
        if reserved:
            raise ValueError(f"{reserved[0]!r} is set from the caller's API key and cannot be "
                             f"allowed to callers (reserved: {', '.join(sorted(RESERVED_TAGS))})")
        return names


class _Unusable:
    """A ``[providers.X]`` entry that cannot become a provider; its validator says why."""

    def __init__(self, message: str) -> None:
        self.message = message


def _usable(v: Any) -> Any:
    if isinstance(v, _Unusable):
        raise PydanticCustomError("provider", v.message)
    return v


#: one ``[providers.X]``: the bundled profile X with the file's and the caller's keys over it
Provider = Annotated[ProviderSettings, BeforeValidator(_usable)]


class Settings(BaseModel):
    """Everything a Client is configured with, as typed objects, validated in one pass.

    ``providers`` holds every provider fully resolved (bundled profile, then the file's
    ``[providers.X]``, then ``Client(providers=...)``); ``rules`` and ``budgets`` are the
    compiled `Rule` and `BudgetSpec` objects. Nothing downstream parses a table again.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)

    ledger: str | None = None            # "sqlite:///abs.db", "sqlite:rel.db", "postgresql://...", "off"
    cache: str | None = None             # "disk", "disk:///path", "memory", "redis://...", "off"; None = none
    cache_sampled: StrictBool = True     # false: cache only deterministic requests (temperature=0)
    cache_ttl: float | None = Field(default=None, gt=0)  # default lifetime of stored answers, seconds
    cache_namespace: str = "default"
    pricing: str | None = None           # a price file merged over the bundled pricing.toml
    master_key_file: str | None = None   # the Fernet key of sealed provider keys (UNILLM_MASTER_KEY wins)
    on_missing_price: Literal["raise", "record"] = "raise"
    tags: dict[str, str] = Field(default_factory=dict)
    providers: dict[str, Provider] = Field(default_factory=dict, validate_default=True)
    aliases: dict[str, str] = Field(default_factory=dict)
    rules: list[Rule] = Field(default_factory=list)
    fallbacks: list[FallbackSpec] = Field(default_factory=list)
    budgets: list[BudgetSpec] = Field(default_factory=list)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    server: ServerSettings = Field(default_factory=ServerSettings)
    log_content: StrictBool = False
    telemetry: Literal["off", "otel"] = "off"   # "otel": OpenTelemetry spans and metrics (unillm[otel])
    log_format: Literal["text", "json"] = "text"  # "json": one JSON line per ledger row (logger unillm.calls)
    drop_params: StrictBool | Literal["warn"] = "warn"   # "warn": drop and warn once; true: silently
    timezone: str = "UTC"
    # hard overall limits, in seconds from when the call is sent, retries and fallbacks
    # included, sync and async. Each attempt's timeout is the provider's `timeout` or the time
    # left, whichever is less (the SDK's per-request timeout); no attempt, retry or fallback
    # starts past the deadline, nor a retry whose backoff would end past it. A call cut at
    # `call_deadline` raises TimeoutError naming it, never retried: its row is `unknown` and its
    # budget hold is counted at worst case (an async call is also cancelled). A stream still
    # open after `stream_deadline` is cut at its next chunk (recorded as partial). Past its
    # deadline no call's hold is renewed, so it is counted at its worst case until it settles.
    call_deadline: float | None = Field(default=1800.0, gt=0)
    stream_deadline: float | None = Field(default=3600.0, gt=0)
    # ``[[deployments]]``: many places serving one model name; ``[routing]``: how one is picked
    deployments: list[DeploymentSpec] = Field(default_factory=list)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    # ``[[apis]]``: non-LLM APIs `unillm.observe()` meters, with their prices (observe/apis.py)
    apis: list[ApiSpec] = Field(default_factory=list)

    # where the settings came from, for error messages and relative paths
    source: str = Field(default="Client(...)", exclude=True)
    # the providers given a ``[providers.X]`` table (or Client(providers=...)), not only bundled
    _configured: frozenset[str] = PrivateAttr(default=frozenset())

    @property
    def configured_providers(self) -> frozenset[str]:
        return self._configured

    @field_validator("providers", mode="before")
    @classmethod
    def _profiles(cls, v: Any) -> Any:
        """Every bundled profile, with the given tables merged over it (a new provider needs
        ``adapter``); each entry is then validated as a `ProviderSettings` on its own."""
        if not isinstance(v, Mapping):
            return v  # pydantic names the type
        out: dict[Any, Any] = dict(_bundled())
        for name, table in v.items():
            out[name] = _provider_table(name, table, out.get(name))
        return out

    @field_validator("rules", "budgets")
    @classmethod
    def _unique_names(cls, items: list[Any], info: Any) -> list[Any]:
        first: dict[str, int] = {}
        for i, item in enumerate(items):
            if item.name in first:
                label = rule_label(first[item.name], item.name) if info.field_name == "rules" \
                    else f"budgets[{first[item.name]}] ({item.name!r})"
                raise ValidationError.from_exception_data("Settings", [InitErrorDetails(
                    type=PydanticCustomError("duplicate", "duplicate {what} name; {label} already uses it",
                                             {"what": info.field_name[:-1], "label": label}),
                    loc=(i, "name"), input=item.name)])
            first[item.name] = i
        return items

    @field_validator("aliases")
    @classmethod
    def _no_cycle(cls, aliases: dict[str, str]) -> dict[str, str]:
        for start, target in aliases.items():
            seen, name = [start], target
            while name in aliases:
                if name in seen:
                    raise ValueError(f"alias cycle: {' -> '.join([*seen[seen.index(name):], name])}")
                seen.append(name)
                name = aliases[name]
        return aliases

    @model_validator(mode="after")
    def _deployment_providers(self) -> Settings:
        seen: set[str] = set()
        for i, d in enumerate(self.deployments):
            if d.provider not in self.providers:
                close = errors.did_you_mean(d.provider, sorted(self.providers))
                hint = f"did you mean {close[0]!r}?" if close else "name a profile or a [providers.NAME] table"
                raise ValidationError.from_exception_data("Settings", [InitErrorDetails(
                    type=PydanticCustomError("provider", "unknown provider; {hint}", {"hint": hint}),
                    loc=("deployments", i, "provider"), input=d.provider)])
            if d.label in seen:
                raise ValidationError.from_exception_data("Settings", [InitErrorDetails(
                    type=PydanticCustomError("duplicate", "two deployments are named {n!r}; give one a 'name'",
                                             {"n": d.label}), loc=("deployments", i, "name"), input=d.label)])
            seen.add(d.label)
        return self

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


def _bundled() -> dict[str, dict[str, Any]]:
    return {name: {k: v for k, v in table.items() if k != "_file"} for name, table in bundled_profiles().items()}


def _provider_table(name: Any, table: Any, base: Any) -> Any:
    """``table`` over ``base`` (a bundled profile, a resolved provider, or None for a new one)."""
    if isinstance(table, ProviderSettings):
        return table
    if not isinstance(table, Mapping):
        return _Unusable("must be a table of settings")
    if base is None and "adapter" not in table:
        known = sorted(bundled_profiles())
        close = errors.did_you_mean(str(name), known)
        hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"
        return _Unusable("unknown provider: a new provider needs 'adapter' (and usually 'base_url')" + hint)
    if isinstance(base, ProviderSettings):
        base = profile_fields(base)
    return {**(base or {"name": name}), **table}


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
    is reported in one `ConfigError`; each names the file and the key path, with
    did-you-mean. ``base`` (settings already loaded) takes the place of a file. ``deep``
    (what `Client` asks for) also resolves and prices each rule's ``use`` target.
    """
    data: dict[str, Any] = dict(base or {})
    source = source or "Client(...)"
    if path is not None:
        data = load_toml(path)  # a ConfigError for anything that is not a readable TOML file
        path = Path(path)
        source = str(path)
        _relative_to(data, path.parent)
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "providers" and isinstance(value, Mapping) and isinstance(data.get("providers"), Mapping):
            merged = dict(data["providers"])
            for name, table in value.items():
                old = merged.get(name)
                if isinstance(old, ProviderSettings):
                    old = profile_fields(old)
                merged[name] = {**old, **table} if isinstance(old, Mapping) and isinstance(table, Mapping) \
                    else table
            data["providers"] = merged
        else:
            data[key] = value
    return validate(data, source, deep=deep)


def validate(data: Mapping[str, Any], source: str, *, deep: bool = False) -> Settings:
    """``data`` as `Settings`, or one ConfigError listing every problem (``.problems``:
    one ConfigError per mistake, each with its key path)."""
    try:
        with nested_rules():
            settings = Settings(**data)
    except ValidationError as exc:
        raise combine_errors(config_errors(exc, file=source, model=Settings,
                                           label=lambda loc: _key_path(loc, data)), file=source) from None
    except TypeError as exc:  # keyword names that are not strings
        raise errors.ConfigError(f"bad setting names: {exc}", file=source) from None
    settings.source = source
    given = data.get("providers")
    settings._configured = frozenset(given) if isinstance(given, Mapping) else frozenset()
    if deep and any(rule.use for rule in settings.rules):
        problems = _rule_target_problems(settings, source)
        if problems:
            raise combine_errors(problems, file=source)
    return settings


def fields_of(settings: Settings) -> dict[str, Any]:
    """The settings as typed values (not dumped): the ``base`` of a re-validation."""
    out = {name: getattr(settings, name) for name in Settings.model_fields if name != "source"}
    out["providers"] = {n: p for n, p in settings.providers.items() if n in settings.configured_providers}
    return out


def _key_path(loc: tuple[Any, ...], data: Mapping[str, Any]) -> str:
    """``("budgets", 2, "limit_usd")`` -> ``budgets[2] ("team").limit_usd``: indexes in
    brackets, and a named rule or budget with its name."""
    out = ""
    for i, part in enumerate(loc):
        if part == "[key]":  # pydantic's marker for a dict's key (not its value) being wrong
            out += " (the name)"
        elif isinstance(part, int):
            out += f"[{part}]"
            if i == 1 and loc[0] == "rules":
                out = rule_label(part, _name_at(data.get("rules"), part))
            elif i == 1 and loc[0] == "budgets":
                out += f" ({_name_at(data.get('budgets'), part) or '?'!r})"
        else:
            out += ("." if out else "") + str(part)
    return out


def _name_at(items: Any, index: int) -> Any:
    item = items[index] if isinstance(items, list) and index < len(items) else None
    return item.get("name") if isinstance(item, Mapping) else getattr(item, "name", None)


def _relative_to(data: dict[str, Any], base: Path) -> None:
    """A relative pricing file or ``sqlite:relative.db`` is relative to the config file."""
    pricing = data.get("pricing")
    if isinstance(pricing, str) and pricing.strip() and not Path(pricing).is_absolute():
        data["pricing"] = str(base / pricing)
    master = data.get("master_key_file")
    if isinstance(master, str) and master.strip() and not Path(master).is_absolute():
        data["master_key_file"] = str(base / master)
    ledger = data.get("ledger")
    if isinstance(ledger, str) and ledger.lower().startswith("sqlite:") and not ledger[7:].startswith("/") \
            and ledger[7:].strip() and not ledger[7:].startswith(":memory:") and "\x00" not in ledger:
        head, sep, query = ledger.partition("?")
        data["ledger"] = "sqlite:///" + str((base / head[7:]).resolve()).lstrip("/") + sep + query


def _rule_target_problems(settings: Settings, source: str) -> list[errors.ConfigError]:
    """Every rule's ``use`` resolves and is priced (unless ``on_missing_price = "record"``)."""
    from .pricing import PriceBook
    from .profiles import Resolver
    from .rules.spec import check_targets
    resolver = Resolver(settings.providers, settings.aliases)
    resolve: Callable[[str], Any] = resolver.resolve
    if settings.deployments:  # a [[deployments]] model name is a target: its deployments are checked
        from .routing.spec import target_resolver
        resolve = target_resolver(settings, resolver.resolve)
    if settings.on_missing_price == "record":
        def price(ref: Any) -> Any:
            return None
    else:
        from .adapters.cloud import price_tables
        book = PriceBook.load(settings.pricing).priced_as(price_tables(settings.providers))
        def price(ref: Any) -> Any:
            return book.price(ref.provider, ref.model)
    return check_targets(settings.rules, resolve, price, source=source)


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


__all__ = [
    "RESERVED_TAGS",
    "AlertSettings",
    "FallbackSpec",
    "MetricsSettings",
    "RetrySettings",
    "ServerSettings",
    "Settings",
    "WebhookSettings",
    "errors",
    "fields_of",
    "load_settings",
    "naming_file",
    "validate",
]
