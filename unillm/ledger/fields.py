"""The usage another system may report: one table for `Ledger.record`, ``POST /v1/usage``
and `unillm.track`.

Each `Reported` entry is one keyword of `Ledger.record` (its default, kind and bounds),
one body field of the ingest endpoint (``wire`` when it is named differently there), and,
when ``usage`` names a `unillm.types.Usage` attribute, a value `track` reads from the
vendor's response. ``column`` is the `CallRecord` field it lands in (rows.py stores every
`CallRecord` field; tests check the migrated table against both). A new reportable field
is one line here, its `CallRecord` field and its migration.

`check` validates a report against the table and returns every problem found, each
naming its field, so the ingest endpoint can list them all and `Ledger.record` can raise
the first as an `InvalidRequestError` with that ``param``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any, Literal

from .. import errors
from .when import parse_when

#: the most tokens one bucket of one recorded call may hold, and the most of one metered unit:
#: far above any real call (10 billion tokens), low enough that no sum the ledger keeps can
#: overflow at any volume a deployment can reach
MAX_TOKENS = 10**10
MAX_UNITS = 10**10

Kind = Literal["text", "count", "number", "time", "tags", "units", "choice"]


@dataclass(frozen=True)
class Reported:
    """One reportable field (see the module docstring)."""

    name: str
    kind: Kind
    column: str
    required: bool = False
    default: Any = None
    choices: tuple[str, ...] = ()
    part_of: str | None = None   # a count that is part of another, so cannot exceed it
    usage: str | None = None     # the `Usage` attribute it is (track reads it from the response)
    wire: str | None = None      # its name in a ``POST /v1/usage`` body, when not ``name``

    @property
    def body_name(self) -> str:
        return self.wire or self.name


def _count(name: str, *, required: bool = False, part_of: str | None = None) -> Reported:
    return Reported(name, "count", name, required=required, default=None if required else 0,
                    part_of=part_of, usage=name)


#: in `Ledger.record`'s keyword order
REPORTED: tuple[Reported, ...] = (
    Reported("provider", "text", "provider", required=True),
    Reported("model", "text", "model", required=True),
    _count("input_tokens", required=True),
    _count("output_tokens", required=True),
    _count("cache_read_tokens"),
    _count("cache_write_tokens"),
    _count("cache_write_1h_tokens", part_of="cache_write_tokens"),
    _count("reasoning_tokens", part_of="output_tokens"),
    Reported("tags", "tags", "tags"),
    Reported("at", "time", "started_at", wire="timestamp"),
    Reported("latency_ms", "number", "latency_ms"),
    Reported("requested_model", "text", "requested_model"),
    Reported("section", "text", "section"),
    Reported("status", "choice", "status", default="ok", choices=("ok", "error", "partial", "cache_hit")),
    Reported("usage_source", "choice", "usage_source", default="provider",
             choices=("provider", "tiktoken", "estimate"), usage="source"),
    Reported("units", "units", "units"),
)
BY_NAME: Mapping[str, Reported] = {f.name: f for f in REPORTED}


def check(report: Mapping[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``report`` (field name -> value, as `Ledger.record` takes it) validated: the clean
    values, and ``(param, message)`` for every problem (a unit's param is ``units.<name>``)."""
    clean: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    for f in REPORTED:
        try:
            clean[f.name] = _CHECKS[f.kind](f, report.get(f.name, f.default))
        except errors.InvalidRequestError as exc:
            problems.append((exc.param or f.name, str(exc)))
    for f in REPORTED:
        if f.part_of and isinstance(clean.get(f.name), int) and isinstance(clean.get(f.part_of), int) \
                and clean[f.name] > clean[f.part_of]:
            problems.append((f.name, f"{f.name} are part of {f.part_of} and cannot exceed them"))
    return clean, problems


def value(name: str, raw: Any) -> Any:
    """One field's value validated on its own (no cross-field checks)."""
    f = BY_NAME[name]
    return _CHECKS[f.kind](f, raw)


def _bad(f: Reported, message: str) -> errors.InvalidRequestError:
    return errors.InvalidRequestError(message, param=f.name)


def _text(f: Reported, value: Any) -> str | None:
    if value is None and not f.required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _bad(f, f"{f.name} must be a non-empty string, got {value!r}")
    return value.strip()


def _whole(f: Reported, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(f, f"{f.name} must be a whole number >= 0, got {value!r}")
    if value > MAX_TOKENS:
        raise _bad(f, f"{f.name} must be at most {MAX_TOKENS:,} (10^10) for one call, got {value:,}")
    return value


def _number(f: Reported, value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 \
            or value == float("inf"):
        raise _bad(f, f"{f.name} must be a number >= 0, got {value!r}")
    return float(value)


def _time(f: Reported, value: Any) -> datetime:
    if value is None:
        return datetime.now(timezone.utc)
    if not isinstance(value, (datetime, date, str)):
        raise _bad(f, f"{f.name} must be a datetime or ISO text, got {value!r}")
    parsed = parse_when(value, param=f.name)
    assert parsed is not None
    return parsed


def _tags(f: Reported, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _bad(f, f"{f.name} must be a dict of str to str, got {value!r}")
    for k, v in value.items():
        if not isinstance(k, str) or not k or not isinstance(v, str):
            raise errors.InvalidRequestError(
                f"tags must map non-empty strings to strings; bad entry {k!r}: {v!r}", param=f"tags.{k}")
    return dict(value)


def _choice(f: Reported, value: Any) -> str:
    if value not in f.choices:
        raise _bad(f, f"{f.name} must be {', '.join(f.choices[:-1])} or {f.choices[-1]}, got {value!r}")
    return str(value)


def _units(f: Reported, value: Any) -> dict[str, Decimal]:
    return parse_units(value)


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


_CHECKS: dict[str, Callable[[Reported, Any], Any]] = {
    "text": _text, "count": _whole, "number": _number, "time": _time, "tags": _tags,
    "choice": _choice, "units": _units}
