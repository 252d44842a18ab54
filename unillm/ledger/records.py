"""`CallRecord`: one row of the ledger, one per call and outcome.

A frozen slotted dataclass rather than a pydantic model: the Client makes one on
every call and the ledger's budget is 100 µs, so construction does only the few
checks that protect the data (status, money normalized to Decimal). Input from
outside the Client is validated by `Ledger.record` before a record is made.

There is deliberately no field for an API key, a header or a URL: nothing that
could hold a secret is ever written to the ledger.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from . import money

if TYPE_CHECKING:
    from ..types import Cost, Usage

#: ``in_flight``: written ahead at admission, replaced when the call settles; ``unknown``: an
#: attempt whose outcome (and bill) cannot be known, counted at its worst case
Status = Literal["ok", "error", "cache_hit", "budget_denied", "rule_denied", "unpriced", "partial",
                 "in_flight", "unknown"]
STATUSES: frozenset[str] = frozenset(
    {"ok", "error", "cache_hit", "budget_denied", "rule_denied", "unpriced", "partial",
     "in_flight", "unknown"})
USAGE_SOURCES: frozenset[str | None] = frozenset({"provider", "reported", "tiktoken", "estimate", None})

#: token buckets, in the order they are stored and reported
TOKEN_FIELDS = ("input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens",
                "reasoning_tokens")
#: itemized cost fields (the total is kept separately)
COST_FIELDS = ("input_usd", "cache_read_usd", "cache_write_usd", "output_usd", "other_usd")

_id_lock = threading.Lock()
_last_ms = 0
_seq = 0


def new_id(now_ms: int | None = None) -> str:
    """A UUIDv7 as 32 hex digits: sorts by creation time, unique across processes.

    48 bits of Unix milliseconds, a 12-bit counter (monotonic within one
    process and millisecond), then 62 random bits.
    """
    global _last_ms, _seq
    if now_ms is not None:  # a back-dated record: no monotonic state, random counter
        return _format_uuid7(now_ms, random.getrandbits(12))
    ms = time.time_ns() // 1_000_000
    with _id_lock:
        if ms <= _last_ms:
            ms, _seq = _last_ms, _seq + 1
            if _seq > 0xFFF:  # 4096 ids in one millisecond: borrow the next one
                ms, _seq = ms + 1, 0
        else:
            _seq = 0
        _last_ms = ms
        seq = _seq
    return _format_uuid7(ms, seq)


def _format_uuid7(ms: int, seq: int) -> str:
    # random.getrandbits, not os.urandom: ids need uniqueness, not secrecy, and a system
    # call per id cost more than the rest of the id. The module's generator is seeded
    # from os.urandom and reseeded in every forked child, so processes never share a stream.
    rand = random.getrandbits(62)
    value = (ms << 80) | (0x7 << 76) | (seq << 64) | (0b10 << 62) | rand
    return value.to_bytes(16, "big").hex()  # 32 hex digits, as f"{value:032x}" but cheaper


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True, slots=True)
class CallRecord:
    """What the ledger knows about one call. Money is Decimal USD; None = unpriced."""

    provider: str
    model: str
    status: Status = "ok"
    id: str = field(default_factory=new_id)
    started_at: datetime = field(default_factory=utcnow)
    ended_at: datetime | None = None
    latency_ms: float | None = None
    ttft_ms: float | None = None
    requested_model: str | None = None
    rule: str | None = None
    shadow_rule: str | None = None
    fallback_from: str | None = None
    error_class: str | None = None
    input_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cache_write_1h_tokens: int = 0      # the part of cache_write_tokens written with a 1-hour TTL
    output_tokens: int = 0
    reasoning_tokens: int = 0
    usage_source: str | None = None
    input_usd: Decimal | None = None
    cache_read_usd: Decimal | None = None
    cache_write_usd: Decimal | None = None
    output_usd: Decimal | None = None
    other_usd: Decimal | None = None
    total_usd: Decimal | None = None
    saved_usd: Decimal = Decimal(0)
    saved_reason: str | None = None
    price_version: str | None = None
    fingerprint: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    section: str | None = None
    stream: bool = False
    prompt: str | None = None
    response: str | None = None
    # what was metered besides tokens, by unit name ({"characters": 1200}, {"minutes": 1.5})
    units: dict[str, Decimal] = field(default_factory=dict)
    cache_status: str | None = None      # hit, miss, stored, skipped:<reason>; None = no cache
    dropped_params: tuple[str, ...] = ()  # parameters the vendor cannot honour, dropped
    attempt: int = 1                      # the HTTP attempt of one call this row is (retries: 2, 3 ...)
    retried: bool = False                 # this attempt failed and the call tried again
    sent_model: str | None = None         # the model id unillm asked the vendor for
    deployment: str | None = None         # the deployment that served the call (routing)
    # where each token bucket's number came from, when not all from ``usage_source``
    usage_sources: dict[str, str] = field(default_factory=dict)
    call_id: str | None = None            # shared by every row (attempt, fallback) of one chat()
    kind: str | None = None               # "chat" or "embed" (None: a row from before embeddings)
    inputs: int | None = None             # embed: how many inputs this vendor request carried

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {sorted(STATUSES)}, got {self.status!r}")
        if self.usage_source not in USAGE_SOURCES:
            raise ValueError(f"usage_source must be provider, reported, tiktoken, estimate or None, "
                             f"got {self.usage_source!r}")
        for name in _MONEY_FIELDS:
            value = getattr(self, name)
            if value is not None and not (type(value) is Decimal and _fine(value)):
                object.__setattr__(self, name, money.normalize(value))
        if self.saved_usd is None:
            object.__setattr__(self, "saved_usd", Decimal(0))
        if self.units and not all(type(v) is Decimal for v in self.units.values()):
            object.__setattr__(self, "units", {str(k): _unit(v) for k, v in self.units.items()})
        if type(self.dropped_params) is not tuple:
            object.__setattr__(self, "dropped_params", tuple(self.dropped_params))

    def __hash__(self) -> int:  # tags is a dict: hash by identity of the call instead
        return hash(self.id)

    @property
    def priced(self) -> bool:
        return self.total_usd is not None

    @property
    def prompt_tokens(self) -> int:
        return self.input_tokens + self.cache_read_tokens + self.cache_write_tokens

    def replace(self, **changes: Any) -> CallRecord:
        """A copy with ``changes`` applied (records are immutable)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Field -> value, in declaration order (Decimal and datetime kept as they are)."""
        return {f: getattr(self, f) for f in FIELDS}

    def usage(self) -> Usage:
        """The usage buckets as a `unillm.types.Usage` (for re-pricing)."""
        from ..types import Usage
        return Usage(input_tokens=self.input_tokens, cache_read_tokens=self.cache_read_tokens,
                     cache_write_tokens=self.cache_write_tokens,
                     cache_write_1h_tokens=min(self.cache_write_1h_tokens, self.cache_write_tokens),
                     output_tokens=self.output_tokens,
                     reasoning_tokens=min(self.reasoning_tokens, self.output_tokens),
                     source=self.usage_source or "provider")

    @classmethod
    def from_parts(cls, *, provider: str, model: str, usage: Usage | None = None,
                   cost: Cost | None = None, **fields: Any) -> CallRecord:
        """A record from unillm's `Usage` and `Cost` plus any other field by name.

        ``cost=None`` leaves the call unpriced (``total_usd is None``).
        """
        if usage is not None:  # a field given by name wins over the usage's
            fields = {"input_tokens": usage.input_tokens, "cache_read_tokens": usage.cache_read_tokens,
                      "cache_write_tokens": usage.cache_write_tokens,
                      "cache_write_1h_tokens": usage.cache_write_1h_tokens, "output_tokens": usage.output_tokens,
                      "reasoning_tokens": usage.reasoning_tokens, "usage_source": usage.source, **fields}
        if cost is not None:  # ... and over the cost's
            fields = {"input_usd": cost.input_usd, "cache_read_usd": cost.cache_read_usd,
                      "cache_write_usd": cost.cache_write_usd, "output_usd": cost.output_usd,
                      "other_usd": cost.other_usd, "total_usd": cost.total_usd,
                      "price_version": cost.price_version, **fields}
        if "tags" in fields:
            tags = fields["tags"]
            fields["tags"] = {str(k): str(v) for k, v in tags.items()} if tags is not None else {}
        return cls(provider=provider, model=model, **fields)


FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(CallRecord))
#: the money fields `CallRecord.__post_init__` normalizes
_MONEY_FIELDS = (*COST_FIELDS, "total_usd", "saved_usd")


class _Factory:
    """The default of a field made by its ``default_factory`` (shown as dataclasses shows it)."""

    def __repr__(self) -> str:
        return "<factory>"


def _compile_init(cls: type[CallRecord]) -> None:
    """Give ``cls`` an ``__init__`` with the dataclass's own signature that fills the fields
    with plain slot stores. A frozen dataclass sets each of its ~50 fields through
    ``object.__setattr__``, three quarters of what a record cost to make; here the new record
    is made a `_Draft` (the same slots, without the frozen ``__setattr__``) while its fields
    are stored, then becomes a `CallRecord` again and runs ``__post_init__``, as before."""
    draft = type("_Draft", (), {"__slots__": cls.__slots__})
    env: dict[str, Any] = {"_Draft": draft, "_Record": cls, "_set": object.__setattr__, "_FACTORY": _Factory()}
    params, body = [], []
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            env[f"_d_{f.name}"] = f.default
            params.append(f"{f.name}=_d_{f.name}")
            body.append(f"    self.{f.name} = {f.name}")
        elif f.default_factory is not dataclasses.MISSING:
            env[f"_f_{f.name}"] = f.default_factory
            params.append(f"{f.name}=_FACTORY")
            body.append(f"    self.{f.name} = _f_{f.name}() if {f.name} is _FACTORY else {f.name}")
        else:
            params.append(f.name)
            body.append(f"    self.{f.name} = {f.name}")
    source = (f"def __init__(self, {', '.join(params)}):\n    _set(self, '__class__', _Draft)\n"
              + "\n".join(body) + "\n    self.__class__ = _Record\n    self.__post_init__()\n")
    exec(compile(source, f"<{__name__}.CallRecord.__init__>", "exec"), env)  # noqa: S102 - our own field names
    init = env["__init__"]
    init.__qualname__, init.__doc__ = f"{cls.__qualname__}.__init__", cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[method-assign]


_compile_init(CallRecord)


def _unit(value: Any) -> Decimal:
    """A metered quantity as an exact Decimal (a float through its shortest repr)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise ValueError(f"a unit count must be a number, got {value!r}")  # noqa: TRY004 - pydantic's error
    out = Decimal(repr(value) if isinstance(value, float) else value)
    if not out.is_finite() or out < 0:
        raise ValueError(f"a unit count must be a finite number >= 0, got {value!r}")
    return out


def _fine(value: Decimal) -> bool:
    """True when ``value`` is finite with at most 18 decimal places (no rounding needed).

    Read from its text, not ``as_tuple()`` (which builds a tuple of every digit: a record
    checks seven amounts). The text has exactly ``-exponent`` digits after the point unless
    it is in scientific notation (``1.25E-20``: the exponent less the point's digits)."""
    text = str(value)
    if "E" not in text:  # plain notation, or NaN / Infinity
        return ("." not in text or len(text) - text.find(".") <= 19) and value.is_finite()
    mantissa, _, exp = text.partition("E")
    return int(exp) - len(mantissa.partition(".")[2]) >= -18
