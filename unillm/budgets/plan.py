"""Which budgets a call matches, worked out once per tag set and period, not once per call.

A `Plan` lists the matching budget instances (`Entry`), the counters they read (one per
distinct scope and window, `store`), and — once their bases are known — per counter the
tightest limit of its budgets (`View.limits`) and every alert line as an absolute counter
value (`View.lines`). Admission then compares a few counters with a few numbers, and a
settlement finds the thresholds it crosses by bisection, whatever the number of budgets;
only a call that some budget would refuse looks at each budget (`Budgets._refuse`).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from . import store as sql
from .spec import BudgetSpec

#: plans kept per `Budgets` (tag sets x periods); past it the cache starts over
MAX_PLANS = 4096
_ZERO = Decimal(0)
_EARLIEST = datetime.min.replace(tzinfo=timezone.utc)
_LATEST = datetime.max.replace(tzinfo=timezone.utc)


def atto(usd: Decimal) -> int:
    """``usd`` in 1e-18 USD, rounded up (a bound stays a bound)."""
    return int(usd.scaleb(18).to_integral_value(ROUND_CEILING))


def used_atto(t: sql.Total) -> int:
    """Settled plus held money of a counter, in 1e-18 USD."""
    return (t.spent_nano + t.held_nano) * 10**9 + t.spent_atto + t.held_atto


@dataclass(frozen=True, slots=True)
class Entry:
    """One matching budget instance: its spec, alert slot, counter and base key."""

    spec: BudgetSpec
    slot: sql.Slot                 # (name, scope value, period label)
    key: sql.Key                   # its counter: (scope value, window)
    resets: datetime | None

    @property
    def base_id(self) -> tuple[str, str, str]:
        return (self.spec.name, self.key[0], self.key[1])


@dataclass(frozen=True, slots=True)
class Limit:
    """The tightest limits of one counter's budgets, as counter values (limit + base)."""

    usd: Decimal | None
    usd_atto: int | None
    tokens: int | None
    requests: int | None


@dataclass(frozen=True)
class View:
    """A plan with its bases: per-entry bases, per-counter limits and alert lines."""

    bases: tuple[sql.Base, ...]
    limits: dict[sql.Key, Limit]
    #: per counter, sorted: (absolute spend, entry index, order, threshold or None for exceeded)
    lines: dict[sql.Key, list[tuple[Decimal, int, int, float | None]]]
    #: per counter, sorted: each line in 1e-18 USD, rounded down (`near`)
    marks: dict[sql.Key, list[int]] = field(default_factory=dict)

    def state(self, i: int, e: Entry, t: sql.Total) -> sql.State:
        spent, tokens, requests = self.bases[i]
        return sql.State(t.spent - spent, t.tokens - tokens, t.requests - requests, t.held, t.held_tokens,
                         t.held_requests)

    def fits(self, totals: dict[sql.Key, sql.Total], usd: Decimal | None, tokens: int) -> bool:
        """Whether every budget of the plan can take a call of ``usd`` and ``tokens``."""
        usd_atto = None if usd is None else atto(usd)
        for key, lim in self.limits.items():
            t = totals[key]
            if lim.usd_atto is not None and (usd_atto is None or used_atto(t) + usd_atto > lim.usd_atto):
                return False
            if lim.tokens is not None and t.tokens + t.held_tokens + tokens > lim.tokens:
                return False
            if lim.requests is not None and t.requests + t.held_requests + 1 > lim.requests:
                return False
        return True

    def holds(self, rows: list[Any]) -> bool:
        """Whether counters as `store.hold` returns them (the call's hold in them) are all
        within their tightest limits: `fits` for the counters after the hold."""
        limits = self.limits
        for r in rows:
            lim = limits.get((r[0], r[1]))
            if lim is None:
                continue
            if lim.usd_atto is not None and (r[2] + r[6]) * 10**9 + r[3] + r[7] > lim.usd_atto:
                return False
            if lim.tokens is not None and r[4] + r[8] > lim.tokens:
                return False
            if lim.requests is not None and r[5] + r[9] > lim.requests:
                return False
        return True

    def near(self, rows: list[Any], delta_atto: int) -> bool:
        """Whether spend moving by ``delta_atto`` (1e-18 USD) to the counter ``rows`` (as
        `store.bump` returns them) may cross an alert line: integer bisection on `marks`,
        so a settlement that crosses nothing makes no `Decimal`. True is checked by `crossed`."""
        for r in rows:
            marks = self.marks.get((r[0], r[1]))
            if not marks:
                continue
            after = int(r[2]) * 10**9 + int(r[3])
            lo, hi = min(after - delta_atto, after), max(after - delta_atto, after)
            i = bisect_left(marks, lo - 1)
            if i < len(marks) and marks[i] <= hi:
                return True
        return False

    def crossed(self, key: sql.Key, before: Decimal, after: Decimal) -> list[tuple[int, int, float | None]]:
        """Alert lines of ``key``'s budgets that spend going from ``before`` to ``after`` crosses:
        a threshold when ``before < line <= after``, the limit when ``before <= line < after``."""
        lines = self.lines.get(key)
        if not lines or after <= before:
            return []
        lo = bisect_left(lines, (before,))
        hi = bisect_right(lines, (after, float("inf")))
        out = []
        for line, i, order, frac in lines[lo:hi]:
            if (before < line <= after) if frac is not None else (before <= line < after):
                out.append((i, order, frac))
        return out


@dataclass
class Plan:
    entries: list[Entry]
    keys: list[sql.Key]            # sorted, distinct
    floor: int                     # the largest min_output_tokens of its budgets
    lease: float                   # the shortest lease of its budgets
    view: View | None = field(default=None)
    flat: tuple[str, ...] = field(init=False)   # the keys flattened: the statements' parameters
    counters: str = field(init=False)            # the keys as a flight row's ``counters``

    def __post_init__(self) -> None:
        self.flat = tuple(x for k in self.keys for x in k)
        self.counters = sql.counters(self.keys)

    def make_view(self, bases: dict[tuple[str, str, str], sql.Base]) -> View:
        mine = tuple(bases[e.base_id] for e in self.entries)
        usd: dict[sql.Key, Decimal] = {}
        tokens: dict[sql.Key, int] = {}
        requests: dict[sql.Key, int] = {}
        lines: dict[sql.Key, list[tuple[Decimal, int, int, float | None]]] = {}
        for i, (e, (b_usd, b_tok, b_req)) in enumerate(zip(self.entries, mine)):
            s, k = e.spec, e.key
            if s.limit_usd is not None:
                usd[k] = min(usd.get(k, s.limit_usd + b_usd), s.limit_usd + b_usd)
            if s.limit_tokens is not None:
                tokens[k] = min(tokens.get(k, s.limit_tokens + b_tok), s.limit_tokens + b_tok)
            if s.limit_requests is not None:
                requests[k] = min(requests.get(k, s.limit_requests + b_req), s.limit_requests + b_req)
            if s.limit_usd:
                at = lines.setdefault(k, [])
                for order, frac in enumerate(s.alert_at):
                    at.append((b_usd + s.limit_usd * Decimal(str(frac)), i, order, frac))
                at.append((b_usd + s.limit_usd, i, len(s.alert_at), None))
        limits = {k: Limit(usd.get(k), atto(usd[k]) if k in usd else None, tokens.get(k), requests.get(k))
                  for k in self.keys if k in usd or k in tokens or k in requests}
        return View(mine, limits, {k: sorted(v, key=lambda x: (x[0], x[1], x[2])) for k, v in lines.items()},
                    {k: sorted(int(x[0].scaleb(18).to_integral_value(ROUND_FLOOR)) for x in v) for k, v in lines.items()})


class Planner:
    """Builds and caches `Plan` objects for one list of specs."""

    def __init__(self, specs: list[BudgetSpec], default_tz: str) -> None:
        self.specs, self._tz = specs, default_tz
        self._names = sorted({k for s in specs for k in s.scope})
        self._zones: dict[tuple[str, str], BudgetSpec] = {}  # one spec per (period, timezone)
        for s in specs:
            self._zones.setdefault((s.period, s.timezone or default_tz), s)
        self._order = sorted(self._zones)
        self._spans: dict[tuple[str, str], tuple[str, str, datetime | None, datetime | None]] = {}
        self._plans: dict[tuple[object, ...], Plan | None] = {}
        # (from, until, every zone's window): valid while ``from <= now < until`` (`_windows_at`);
        # one tuple, replaced whole, so a thread never reads one span's bounds with another's windows
        self._current: tuple[datetime, datetime, tuple[str, ...]] = (_LATEST, _EARLIEST, ())

    def _windows_at(self, now: datetime) -> tuple[str, ...]:
        """Every zone's window at ``now``, remembered with the span in which none of them
        changes (a plan is then looked up by its tags alone)."""
        spans = [self._span(z, self._zones[z], now) for z in self._order]
        windows = tuple(s[1] for s in spans)
        self._current = (max((s[2] for s in spans if s[2] is not None), default=_EARLIEST),
                         min((s[3] for s in spans if s[3] is not None), default=_LATEST), windows)
        return windows

    def window(self, spec: BudgetSpec, now: datetime) -> tuple[str, str, datetime | None]:
        """(period label, counter window, reset time) of ``spec`` at ``now``."""
        label, window, _, resets = self._span((spec.period, spec.timezone or self._tz), spec, now)
        return label, window, resets

    def _span(self, zone: tuple[str, str], spec: BudgetSpec,
              now: datetime) -> tuple[str, str, datetime | None, datetime | None]:
        """A zone's current window, recomputed only when ``now`` leaves the one cached."""
        got = self._spans.get(zone)
        if got is not None and (got[2] is None or got[3] is None or got[2] <= now < got[3]):
            return got
        label, start, resets = spec.span(now, zone[1])
        got = (label, "total" if zone[0] == "total" else f"{label}|{zone[1]}", start, resets)
        self._spans[zone] = got
        return got

    def plan(self, tags: Mapping[str, str], now: datetime) -> Plan | None:
        """The plan of a call with ``tags`` at ``now`` (None: no budget matches)."""
        start, until, windows = self._current
        try:
            current = start <= now < until
        except TypeError:  # a naive clock (possible with only ``total`` budgets): worked out each time
            current = False
        if not current:
            windows = self._windows_at(now)
        cache_key = (tuple(map(tags.get, self._names)), windows)
        if cache_key in self._plans:
            return self._plans[cache_key]
        entries = []
        for spec in self.specs:
            scope = spec.scope_key(tags)
            if scope is None:
                continue
            label, window, resets = self.window(spec, now)
            entries.append(Entry(spec, sql.Slot(spec.name, scope, label), (scope, window), resets))
        plan = None
        if entries:
            plan = Plan(entries, sorted({e.key for e in entries}),
                        max(e.spec.min_output_tokens for e in entries), min(e.spec.lease_seconds for e in entries))
        if len(self._plans) >= MAX_PLANS:
            self._plans.clear()
        self._plans[cache_key] = plan
        return plan
