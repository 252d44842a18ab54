"""What a budget is: a limit on a scope of calls over a calendar period.

``scope`` matches call tags: ``{project = "bot"}`` is one budget for that
project; ``{user = "*"}`` is one budget per distinct user (a call without a
``user`` tag is outside it); no scope is global. Periods are calendar-aligned in
the budget's timezone: ``daily`` (midnight), ``weekly`` (Monday), ``monthly``
(the 1st), ``total`` (never resets).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .. import errors
from .._toml import pydantic_error_to_config_error

Period = Literal["daily", "weekly", "monthly", "total"]

#: default lease of a hold. A live call renews its hold (`heartbeat`); a hold left to expire
#: belonged to a process that died, and is then counted at its worst case, never refunded
DEFAULT_LEASE_SECONDS = 900
#: the smallest output cap a budget injects into a request that has no ``max_tokens``;
#: a budget that cannot pay for this much refuses the call rather than send a useless one
DEFAULT_MIN_OUTPUT_TOKENS = 256


class BudgetSpec(BaseModel):
    """One ``[[budgets]]`` table, validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    scope: dict[str, str] = Field(default_factory=dict)
    period: Period = "monthly"
    timezone: str | None = None            # default: the client's `timezone` setting
    limit_usd: Decimal | None = Field(default=None, ge=0)
    limit_tokens: int | None = Field(default=None, ge=0)
    limit_requests: int | None = Field(default=None, ge=0)
    alert_at: tuple[float, ...] = ()
    on_exceed: str = "raise"               # raise | warn | downgrade:MODEL
    lease_seconds: float = Field(default=DEFAULT_LEASE_SECONDS, gt=0)
    min_output_tokens: int = Field(default=DEFAULT_MIN_OUTPUT_TOKENS, ge=1)

    @field_validator("limit_usd", mode="before")
    @classmethod
    def _exact(cls, v: Any) -> Any:
        return Decimal(str(v)) if isinstance(v, float) else v   # 100.1 stays 100.1, not its binary twin

    @field_validator("alert_at")
    @classmethod
    def _fractions(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(not 0 < f <= 1 for f in v):
            raise ValueError("alert_at values are fractions of the limit, in (0, 1]")
        return tuple(sorted(set(v)))

    @field_validator("on_exceed")
    @classmethod
    def _policy(cls, v: str) -> str:
        if v in ("raise", "warn") or (v.startswith("downgrade:") and len(v) > len("downgrade:")):
            return v
        raise ValueError("must be 'raise', 'warn' or 'downgrade:MODEL'")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown timezone {v!r} (use an IANA name like 'Europe/Paris')") from None
        return v

    @model_validator(mode="after")
    def _some_limit(self) -> BudgetSpec:
        if self.limit_usd is None and self.limit_tokens is None and self.limit_requests is None:
            raise ValueError("a budget needs limit_usd, limit_tokens or limit_requests")
        return self

    @property
    def downgrade_to(self) -> str | None:
        return self.on_exceed.partition(":")[2] if self.on_exceed.startswith("downgrade:") else None

    def scope_key(self, tags: Mapping[str, str]) -> str | None:
        """This call's instance of the budget (``"user=u42"``, ``""`` for global), or None."""
        parts = []
        for key, want in sorted(self.scope.items()):
            have = tags.get(key)
            if have is None or (want != "*" and have != want):
                return None
            parts.append(f"{key}={have}")
        return ",".join(parts)

    def window(self, now: datetime, default_tz: str) -> tuple[str, datetime | None]:
        """(period label, when it resets in UTC) for ``now``."""
        label, _, resets = self.span(now, default_tz)
        return label, resets

    def span(self, now: datetime, default_tz: str) -> tuple[str, datetime | None, datetime | None]:
        """(period label, when it began, when it resets) for ``now``, in UTC (None: ``total``)."""
        if self.period == "total":
            return "total", None, None
        local = now.astimezone(ZoneInfo(self.timezone or default_tz))
        day = local.date()
        if self.period == "daily":
            start, nxt = day, day + timedelta(days=1)
            label = day.isoformat()
        elif self.period == "weekly":
            start = day - timedelta(days=day.weekday())
            nxt = start + timedelta(days=7)
            label = f"{start.isoformat()}/W"
        else:
            start = day.replace(day=1)
            nxt = (start + timedelta(days=32)).replace(day=1)
            label = start.strftime("%Y-%m")
        return label, _midnight(start, local.tzinfo), _midnight(nxt, local.tzinfo)


def _midnight(d: date, tz: Any) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=tz).astimezone(timezone.utc)


def parse_budgets(raw: list[Any], source: str) -> list[BudgetSpec]:
    """Validate ``[[budgets]]``; the first problem is a ConfigError naming file, index, key."""
    out: list[BudgetSpec] = []
    for i, item in enumerate(raw):
        if isinstance(item, BudgetSpec):
            out.append(item)
            continue
        name = item.get("name", "?") if isinstance(item, Mapping) else "?"
        try:
            out.append(BudgetSpec(**item))
        except (ValidationError, TypeError) as exc:
            if isinstance(exc, TypeError):
                raise errors.ConfigError("must be a table", file=source, key=f"budgets[{i}]") from None
            raise pydantic_error_to_config_error(exc, file=source, prefix=f"budgets[{i}] ({name!r})") from None
    names = [b.name for b in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise errors.ConfigError("duplicate budget name", file=source, key="budgets", value=dup)
    return out
