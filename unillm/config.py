"""``unillm.toml`` -> a validated `Settings` object.

Top-level keys are settings; tables are collections. ``Client(**kwargs)`` takes
the same names; keyword arguments win over the file. An unknown key, a wrong type
or a bad value is a `ConfigError` naming the file, the key and the value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from . import errors
from ._toml import load_toml, pydantic_error_to_config_error


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


class ServerSettings(BaseModel):
    """``[server]``: what ``unillm serve`` lets its callers do, and the limits it enforces.

    Every default is the safe one: a tenant may choose nothing the operator did not allow.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)
    allow_extra: list[str] = Field(default_factory=list)   # `extra` keys callers may send
    allow_tags: list[str] = Field(default_factory=list)    # tag names callers may set
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    max_json_depth: int = Field(default=64, gt=0)
    header_timeout: float = Field(default=10.0, gt=0)      # seconds to receive the headers
    body_timeout: float = Field(default=60.0, gt=0)        # seconds to receive the body
    max_concurrent_per_key: int | None = Field(default=None, gt=0)
    cors_origins: list[str] = Field(default_factory=list)  # CORS is off unless listed
    usage_window_seconds: float = Field(default=7 * 86400, gt=0)  # POST /v1/usage timestamps
    ratelimit: str | None = None    # "redis://..." to share limits through Redis; default the ledger


class Settings(BaseModel):
    """Everything a Client is configured with, validated once."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    ledger: str | None = None            # "sqlite:///path.db", "postgresql://...", "off"; None = default
    cache: str | None = None             # "disk:///path", "memory", "redis://...", "off"; None = default
    cache_sampled: bool = True           # false: cache only deterministic requests (temperature=0)
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
    log_content: bool = False
    drop_params: bool | Literal["warn"] = "warn"
    timezone: str = "UTC"

    # where the settings came from, for error messages and relative paths
    source: str = Field(default="Client(...)", exclude=True)


def load_settings(path: str | Path | None = None, **overrides: Any) -> Settings:
    """Read ``path`` (if given), apply keyword overrides, validate."""
    data: dict[str, Any] = {}
    source = "Client(...)"
    if path is not None:
        path = Path(path)
        data = load_toml(path)
        source = str(path)
        # a relative pricing file is relative to the config file, not the cwd
        if isinstance(data.get("pricing"), str) and not Path(data["pricing"]).is_absolute():
            data["pricing"] = str(path.parent / data["pricing"])
    for key, value in overrides.items():
        if value is None:
            continue
        if key == "providers" and isinstance(value, dict):
            merged = {k: dict(v) for k, v in data.get("providers", {}).items()}
            for name, table in value.items():
                merged[name] = {**merged.get(name, {}), **(table or {})}
            data["providers"] = merged
        else:
            data[key] = value
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise pydantic_error_to_config_error(exc, file=source) from None
    settings.source = source
    return settings


__all__ = ["Settings", "ServerSettings", "RetrySettings", "FallbackSpec", "AlertSettings", "load_settings", "errors"]
