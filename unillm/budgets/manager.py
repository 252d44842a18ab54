"""`Budgets`: admit a call only if its worst case fits, then settle what it really cost.

Admission is one transaction of a fixed number of statements whatever the number of
budgets that match (`store`). Usually two (`Budgets._quick`): the counters' held money
raised by one ``UPDATE ... RETURNING``, the counters it returns compared with their budgets'
tightest limits (`plan.View`), one flight row written (the hold and the call's write-ahead
description). Otherwise (`Budgets._decide`): lapsed holds counted at their worst case, the
counters read, locked and compared with each budget, then the same two writes. When the request has no ``max_tokens``, the cap is chosen here, inside the
lock (see `_cap`), so the hold is a true upper bound. While the call lives, `Heartbeat`
renews its hold, up to the call's deadline. Settlement happens in the ledger row's
transaction: the flight row deleted, the counters moved from held to spent in one
statement, the alert lines it crosses claimed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from fractions import Fraction
from typing import Any

from .. import errors
from ..ledger.money import normalize
from . import store as sql
from .alerts import Alerts, warn_over
from .heartbeat import Heartbeat
from .plan import Plan, Planner, View, atto
from .spec import BudgetSpec, parse_budgets

_ZERO = Decimal(0)
_ATTO = Decimal("1e-18")

#: a prompt count that is only an estimate (a vendor whose tokenizer is not tiktoken) is
#: raised by this factor before it is held, so the hold stays an upper bound
ESTIMATE_MARGIN = Fraction(13, 10)
#: ``retry_after`` of a refusal caused by holds in flight: they settle at what their calls
#: really cost (usually far below the hold) as soon as those calls end
HELD_RETRY_SECONDS = 2.0
#: the quick admission looks for lapsed leases (of calls whose process died) at most this
#: often while other calls hold money in its counters (`Budgets._probe`)
PROBE_SECONDS = 1.0


@dataclass(frozen=True)
class Worst:
    """A call's worst case: its prompt, and what each output token may cost."""

    prompt_usd: Decimal | None        # None: the model is unpriced
    per_output_usd: Decimal
    prompt_tokens: int
    max_tokens: int | None            # the request's cap; None = choose one
    model_max: int                    # the most output the model can give

    @classmethod
    def of(cls, price: Any, prompt_tokens: int, *, exact: bool, max_tokens: int | None,
           model_max: int) -> Worst:
        """The worst case of a call at ``price`` (None: unpriced), remembered: prices are
        immutable and a service sends the same few prompt sizes and caps again and again.

        The prompt is priced at the dearest input rate (uncached, or a cache write),
        each output token at the output rate of the tier the prompt falls in. A count
        that is not tiktoken-exact gets ``ESTIMATE_MARGIN`` so the bound still holds.
        """
        key = (id(price), prompt_tokens, exact, max_tokens, model_max)
        got = _WORST.get(key)
        if got is not None and got[0] is price:
            return got[1]
        worst = cls._of(price, prompt_tokens, exact=exact, max_tokens=max_tokens, model_max=model_max)
        if len(_WORST) >= 4096:
            _WORST.clear()
        _WORST[key] = (price, worst)  # (the price kept in the value, so its id is not reused)
        return worst

    @classmethod
    def _of(cls, price: Any, prompt_tokens: int, *, exact: bool, max_tokens: int | None,
            model_max: int) -> Worst:
        if not exact:
            prompt_tokens = -(-prompt_tokens * ESTIMATE_MARGIN.numerator // ESTIMATE_MARGIN.denominator)
        if price is None:
            return cls(None, _ZERO, prompt_tokens, max_tokens, model_max)
        prompt, per_output = price.worst_case(prompt_tokens)
        return cls(prompt, per_output, prompt_tokens, max_tokens, model_max)

    def usd(self, cap: int) -> Decimal | None:
        return None if self.prompt_usd is None else self.prompt_usd + self.per_output_usd * cap


#: `Worst.of` by (price id, prompt tokens, exact, max_tokens, model_max): (price, worst case)
_WORST: dict[tuple[int, int, bool, int | None, int], tuple[Any, Worst]] = {}


#: `_held` by (prompt USD, USD per output token, cap)
_HELD: dict[tuple[Decimal, Decimal, int], tuple[Decimal, int, int, str]] = {}


def _held(prompt_usd: Decimal, per_output_usd: Decimal, cap: int) -> tuple[Decimal, int, int, str]:
    """The hold of a call (its worst case in whole 1e-18 USD, rounded up), its ``(nano, atto)``
    pair and its text in the flight row, remembered like `Worst.of`."""
    key = (prompt_usd, per_output_usd, cap)
    got = _HELD.get(key)
    if got is None:
        if len(_HELD) >= 4096:
            _HELD.clear()
        amount = _ceil18(prompt_usd + per_output_usd * cap)
        nano, atto_ = divmod(atto(amount), 10**9)
        got = _HELD[key] = (amount, nano, atto_, format(amount, "f"))
    return got


@dataclass(slots=True)
class Hold:
    """Money set aside for one call in every counter its budgets read: one flight row."""

    id: str
    plan: Plan
    usd: Decimal
    tokens: int
    cap: int                          # the max_tokens the call must be sent with
    lease: float = 0.0                # seconds a renewal extends the hold by
    flight: bool = False              # the flight row carries the call's write-ahead description
    nano: int = 0                     # ``usd`` as the counters hold it (`store.pair`)
    atto: int = 0
    since: datetime | None = None     # when it was admitted
    seconds: float | None = None      # renewed for that long after, no longer (None: while the call lives)

    @property
    def deadline(self) -> datetime | None:
        """When renewals stop (None: never, while the call lives)."""
        if self.seconds is None or self.since is None:
            return None
        return self.since + timedelta(seconds=self.seconds)

    @property
    def slots(self) -> list[tuple[BudgetSpec, sql.Slot]]:
        return [(e.spec, e.slot) for e in self.plan.entries]


@dataclass
class Admission:
    hold: Hold | None = None
    denied: errors.BudgetExceededError | None = None
    denied_spec: BudgetSpec | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


class Budgets:
    """The client's budgets: ``client.budgets.status()``, ``.add(...)``, ``.on(...)``."""

    def __init__(self, specs: list[BudgetSpec], store: Callable[[], Any], clock: Callable[[], datetime],
                 timezone: str, alerts: Alerts) -> None:
        self._store, self._clock, self._tz, self.alerts = store, clock, timezone, alerts
        self._bases: dict[tuple[str, str, str], sql.Base] = {}  # written once in the database: kept
        self._stale = False  # lapsed flights seen on counters not locked: reconciled after commit
        self._probed: tuple[datetime, datetime] | None = None  # the quick path's last look for lapsed leases, and
        #                                                      # when the next is due (`_probe`)
        self.specs = list(specs)
        self._heartbeat = Heartbeat(self._renew, clock)

    @property
    def specs(self) -> list[BudgetSpec]:
        return self._planner.specs

    @specs.setter
    def specs(self, specs: list[BudgetSpec]) -> None:
        self._planner = Planner(specs, self._tz)   # a new list: plans made for the old one are dropped

    def __bool__(self) -> bool:
        return bool(self.specs)

    def close(self) -> None:
        """Stop the heartbeat and webhook threads (webhooks queued are delivered first)."""
        self._heartbeat.stop()
        self.alerts.close()

    def add(self, spec: BudgetSpec | Mapping[str, Any]) -> BudgetSpec:
        """Add a budget at run time (a gateway key's budget, say)."""
        (parsed,) = parse_budgets([spec], source="budgets.add(...)")
        if any(s.name == parsed.name for s in self.specs):
            raise errors.ConfigError("a budget with this name exists", key="budgets", value=parsed.name)
        self.specs = [*self.specs, parsed]
        return parsed

    def on(self, event: str, fn: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        return self.alerts.on(event, fn)

    def matching(self, tags: Mapping[str, str], now: datetime) -> list[tuple[BudgetSpec, sql.Slot, datetime | None]]:
        plan = self._planner.plan(tags, now)
        return [(e.spec, e.slot, e.resets) for e in plan.entries] if plan is not None else []

    # ── admission ────────────────────────────────────────────────────────────

    def admit(self, tags: Mapping[str, str], worst: Worst, now: datetime | None = None, *,
              flight: Callable[[], str | None] | None = None, deadline: float | None = None) -> Admission:
        """Hold ``worst`` in every matching budget, or say which one refuses.

        One transaction of a fixed number of statements whatever the number of budgets.
        Usually (`_quick`) two: the counters' held money raised, returning them to compare
        with the plan's limits, and one flight row written — the hold and, from ``flight``
        (`unillm.budgets.flight.in_flight`), the call's write-ahead description. Else
        (`_decide`) lapsed flights counted and the counters read first.
        ``deadline``: seconds after which the hold is no longer renewed.
        """
        now = now or self._clock()
        plan = self._planner.plan(tags, now)
        if plan is None:
            return Admission()
        view = plan.view
        with self._store().transaction() as tx:
            quick = self._quick(tx, plan, view, worst, now, flight) if view is not None else None
            adm, fresh = (Admission(quick), None) if quick is not None else self._decide(tx, plan, worst, now, flight)
        if fresh is not None:
            self._install(plan, fresh)
        if self._stale:
            self._stale = False
            self.reconcile(now)
        if adm.hold is not None:
            adm.hold.since, adm.hold.seconds, adm.hold.flight = now, deadline, flight is not None
            self._heartbeat.watch(adm.hold)
        return adm

    def _quick(self, tx: Any, plan: Plan, view: View, worst: Worst, now: datetime,
               flight: Callable[[], str | None] | None) -> Hold | None:
        """Admission in two statements: the hold added to the counters, which come back to be
        compared with the plan's limits (the transaction holds the write lock, so what they say
        is what the call fits in); the flight row. A request without a cap is held at the
        model's maximum, kept only if `_cap` would have chosen it from the counters as they
        were. None, with the counters as they were, when the general path must decide: the call
        does not fit, a lease is found lapsed while others hold money (`_probe`), another cap is
        due, or a counter is new."""
        if worst.prompt_usd is None:
            return None
        cap = worst.max_tokens if worst.max_tokens is not None else worst.model_max  # (then checked: `_cap`)
        amount, nano, atto_, text = _held(worst.prompt_usd, worst.per_output_usd, cap)
        tokens = worst.prompt_tokens + cap
        n = len(plan.keys)
        if tx.dialect.for_update:
            sql.read(tx, plan.keys)  # PostgreSQL: the counters locked in key order first
        rows = sql.hold(tx, n, plan.flat, nano, atto_, tokens)
        if len(rows) < n or not view.holds(rows) or (any(r[9] > 1 for r in rows) and self._probe(tx, now, plan)) or (
                worst.max_tokens is None and _cap(worst, plan, view, _before(rows, nano, atto_, tokens)) != cap):
            if rows:
                sql.hold(tx, n, plan.flat, -nano, -atto_, -tokens, -1)
            return None
        hold_id = os.urandom(16).hex()
        sql.add_flight(tx, hold_id, plan.counters, text, tokens, sql.stamp(now) + plan.lease,
                       flight() if flight is not None else None)
        return Hold(hold_id, plan, amount, tokens, cap, plan.lease, nano=nano, atto=atto_)

    def _probe(self, tx: Any, now: datetime, plan: Plan) -> bool:
        """Whether some lease has lapsed, looked for at most every `PROBE_SECONDS` (or a
        quarter of the plan's lease, if shorter) of this process's admissions: the flight
        rows are not indexed by expiry (each call would write the index twice), and a lapsed
        hold is still counted as held until it is found, so finding it later never lets a
        call overshoot; only its ``unknown`` row waits that much longer."""
        if self._probed is not None and self._probed[0] <= now < self._probed[1]:
            return False
        self._probed = (now, now + timedelta(seconds=min(PROBE_SECONDS, plan.lease / 4)))
        return sql.lapsed(tx, now)

    def _decide(self, tx: Any, plan: Plan, worst: Worst, now: datetime,
                flight: Callable[[], str | None] | None) -> tuple[Admission, View | None]:
        """Admission in full: lapsed flights counted, the counters read and compared with
        every budget, the output cap chosen when the request has none; the admission and the
        view made in this transaction (kept once it commits: `_install`), if any."""
        totals = self._lock(tx, plan.keys, now)
        view, fresh = self._view(tx, plan, totals)
        cap = worst.max_tokens if worst.max_tokens is not None else _cap(worst, plan, view, totals)
        usd, tokens = worst.usd(cap), worst.prompt_tokens + cap
        if not view.fits(totals, usd, tokens):
            return self._refuse(tx, plan, view, totals, usd, tokens, now), view if fresh else None
        hold_id = os.urandom(16).hex()
        amount = _ceil18(usd or _ZERO)
        nano, atto_ = sql.pair(amount)
        sql.add_flight(tx, hold_id, plan.counters, format(amount, "f"), tokens, sql.stamp(now) + plan.lease,
                       flight() if flight is not None else None)
        sql.hold(tx, len(plan.keys), plan.flat, nano, atto_, tokens)
        return Admission(Hold(hold_id, plan, amount, tokens, cap, plan.lease, nano=nano, atto=atto_)), \
            view if fresh else None

    def _lock(self, tx: Any, keys: list[sql.Key], now: datetime) -> dict[sql.Key, sql.Total]:
        """Read (and lock) ``keys``' counters, counting lapsed flights at their worst case
        first when the counters hold money (a lapsed hold is still counted as held: only what
        it is called, and its call's ``unknown`` row, wait until it is found)."""
        totals = sql.read(tx, keys)
        if not any(t.held_requests for t in totals.values()):
            return totals
        lapsed = sql.expired(tx, now)
        if not lapsed:
            return totals
        foreign = {k for f in lapsed for k in f.keys} - set(keys)
        if foreign and tx.dialect.for_update:  # other counters: locked later in key order, their own tx
            lapsed = [f for f in lapsed if set(f.keys) <= set(keys)]
            self._stale = True
        sql.take_expired(tx, lapsed, now)
        return sql.read(tx, keys)

    def _view(self, tx: Any, plan: Plan, totals: dict[sql.Key, sql.Total]) -> tuple[View, bool]:
        """The plan's view; (view, True) when it was made in this transaction (its bases are
        kept only once the transaction commits: `_install`)."""
        if plan.view is not None:
            return plan.view, False
        missing = [e.base_id for e in plan.entries if e.base_id not in self._bases]
        found = sql.bases(tx, missing, totals) if missing else {}
        return plan.make_view({**self._bases, **found}), True

    def _install(self, plan: Plan, view: View) -> None:
        for e, base in zip(plan.entries, view.bases):
            self._bases[e.base_id] = base
        plan.view = view

    def _refuse(self, tx: Any, plan: Plan, view: View, totals: dict[sql.Key, sql.Total], usd: Decimal | None,
                tokens: int, now: datetime) -> Admission:
        """Some budget cannot take the call: each budget looked at, in order (events claimed,
        ``warn`` budgets warned); the first refusing one refuses it."""
        adm = Admission()
        for i, e in enumerate(plan.entries):
            spec, state = e.spec, view.state(i, e, totals[e.key])
            if _fits(spec, state, usd, tokens):
                continue
            event = self._event("budget.exceeded", spec, e.slot, state.spent_usd, e.resets)
            if sql.claim_alert(tx, e.slot, "exceeded", now):
                adm.events.append(event)
            if spec.on_exceed == "warn":
                warn_over(spec, e.slot.key)
            elif adm.denied is None:
                adm.denied = _refusal(spec, e.slot, e.resets, state, usd, tokens, now)
                adm.denied_spec = spec
        return adm

    def renew(self, now: datetime | None = None) -> int:
        """Renew the leases of this process's live holds now (the heartbeat does this every
        ``lease / 3``); how many were renewed."""
        return self._heartbeat.beat(now)

    def _renew(self, holds: list[Hold], now: datetime) -> None:
        with self._store().transaction() as tx:
            for h in sorted(holds, key=lambda h: h.id):
                sql.renew(tx, h.id, now + timedelta(seconds=h.lease))

    def reconcile(self, now: datetime | None = None) -> int:
        """Count every lapsed hold at its worst case (its call's row becomes ``unknown``),
        whichever budget it is in, configured here or not; how many calls."""
        now = now or self._clock()
        with self._store().transaction() as tx:
            lapsed = sql.expired(tx, now)
            sql.read(tx, [k for f in lapsed for k in f.keys])
            sql.take_expired(tx, lapsed, now)
        return len(lapsed)

    # ── settlement (inside the ledger row's transaction) ─────────────────────

    def settle(self, tx: Any, hold: Hold, cost: Decimal | None, tokens: int,
               now: datetime | None = None) -> list[dict[str, Any]]:
        """Turn the hold into actual spend; returns the events to emit after commit. A hold
        that lapsed was counted at its worst case: that count is replaced by the real one."""
        self._heartbeat.forget(hold.id)
        sn, sa = sql.exact_pair(cost) if cost else (0, 0)
        if sql.drop_flight(tx, hold.id):
            d = sql.moves(spent=(sn, sa), tokens=tokens, requests=1, held=(-hold.nano, -hold.atto),
                          held_tokens=-hold.tokens, held_requests=-1)
        else:
            if hold.flight:
                sql.forget_unknown(tx, hold.id)
            d = sql.moves(spent=(sn - hold.nano, sa - hold.atto), tokens=tokens - hold.tokens)
        return self._apply(tx, hold.plan, d, now)

    def _apply(self, tx: Any, plan: Plan, d: sql.Delta, now: datetime | None) -> list[dict[str, Any]]:
        """Add ``d`` to the plan's counters; the alert events of the lines it crosses, each
        claimed in this transaction so it fires once even across processes."""
        if tx.dialect.for_update:
            sql.read(tx, plan.keys)  # PostgreSQL: the counters locked in key order first
        view = plan.view
        if view is None or not view.lines or (d[0] == 0 and d[1] == 0):
            sql.bump(tx, plan.keys, d, flat=plan.flat)
            return []
        rows = sql.bump(tx, plan.keys, d, returning=True, flat=plan.flat)
        if not view.near(rows, d[0] * 10**9 + d[1]):
            return []
        after = sql.totals(rows)
        crossed = []
        for key, t in after.items():
            crossed += view.crossed(key, t.minus(d).spent, t.spent)
        if not crossed:
            return []
        now = now or self._clock()
        events = []
        for i, _, frac in sorted(crossed, key=lambda c: (c[0], c[1])):
            e = plan.entries[i]
            spent = after[e.key].spent - view.bases[i][0]
            if frac is not None and sql.claim_alert(tx, e.slot, str(frac), now):
                events.append({**self._event("budget.alert", e.spec, e.slot, spent, e.resets), "threshold": frac})
            elif frac is None and sql.claim_alert(tx, e.slot, "exceeded", now):
                events.append(self._event("budget.exceeded", e.spec, e.slot, spent, e.resets))
        return events

    def release(self, tx: Any, hold: Hold) -> None:
        """Nothing was spent: give the hold back (and undo its worst case where it lapsed)."""
        self._heartbeat.forget(hold.id)
        if sql.drop_flight(tx, hold.id):
            d = sql.moves(held=(-hold.nano, -hold.atto), held_tokens=-hold.tokens, held_requests=-1)
        else:
            if hold.flight:
                sql.forget_unknown(tx, hold.id)
            d = sql.moves(spent=(-hold.nano, -hold.atto), tokens=-hold.tokens, requests=-1)
        if tx.dialect.for_update:
            sql.read(tx, hold.plan.keys)
        sql.bump(tx, hold.plan.keys, d, flat=hold.plan.flat)

    # ── visibility ───────────────────────────────────────────────────────────

    def status(self) -> list[dict[str, Any]]:
        """Spent, reserved, remaining and reset time per budget and scope."""
        now = self._clock()
        wanted: list[tuple[BudgetSpec, str, str, str, datetime | None]] = []
        with self._store().transaction() as tx:
            lapsed = sql.expired(tx, now)
            sql.read(tx, [k for f in lapsed for k in f.keys])
            sql.take_expired(tx, lapsed, now)
            for spec in self.specs:
                label, window, resets = self._planner.window(spec, now)
                if "*" in spec.scope.values():
                    scopes = sql.scopes_of(tx, spec.name, window)
                else:
                    scopes = [spec.scope_key(spec.scope) or ""]
                wanted += [(spec, scope, label, window, resets) for scope in scopes]
            totals = sql.read(tx, [(scope, window) for _, scope, _, window, _ in wanted])
            ids = [(spec.name, scope, window) for spec, scope, _, window, _ in wanted]
            found = sql.bases(tx, [i for i in ids if i not in self._bases], totals)
        self._bases.update(found)
        out = []
        for (spec, scope, label, window, resets), bid in zip(wanted, ids):
            t, (b_usd, b_tok, b_req) = totals[(scope, window)], self._bases[bid]
            st = sql.State(t.spent - b_usd, t.tokens - b_tok, t.requests - b_req, t.held, t.held_tokens,
                           t.held_requests)
            out.append(_status_row(spec, scope, label, resets, st))
        return out

    def in_flight(self) -> list[dict[str, Any]]:
        """The calls holding money now, every process's: id, held USD and tokens, lease expiry
        (UTC), and the call's provider, model, tags and start (their write-ahead description).
        A call whose lease lapsed is listed until an admission, `status` or `reconcile` counts it."""
        from datetime import timezone

        from .flight import describe
        with self._store().transaction() as tx:
            rows = sql.flights(tx)
        return [{"id": i, "reserved_usd": usd, "tokens": tok, "expires_at": datetime.fromtimestamp(exp, timezone.utc),
                 **describe(call)} for i, usd, tok, exp, call in rows]

    def used_fraction(self, tags: Mapping[str, str]) -> float | None:
        """How full the tightest matching budget is (spent + held over limit), for rules."""
        now = self._clock()
        plan = self._planner.plan(tags, now)
        if plan is None:
            return None
        with self._store().transaction() as tx:
            totals = self._lock(tx, plan.keys, now)
            view, fresh = self._view(tx, plan, totals)
        if fresh:
            self._install(plan, view)
        return max(_fraction(e.spec, view.state(i, e, totals[e.key])) for i, e in enumerate(plan.entries))

    def _event(self, name: str, spec: BudgetSpec, slot: sql.Slot, spent: Decimal,
               resets: datetime | None) -> dict[str, Any]:
        return {"event": name, "budget": spec.name, "scope": _scope_dict(slot.scope), "period": slot.period,
                "spent": str(spent), "limit": None if spec.limit_usd is None else str(spec.limit_usd),
                "resets_at": resets.isoformat() if resets else None}

    # ── spend with no hold (usage reported after the fact) ───────────────────

    def charge(self, tx: Any, tags: Mapping[str, str], cost_usd: Decimal | None, tokens: int,
               at: datetime | None = None) -> list[dict[str, Any]]:
        """Add spend that already happened to every matching budget, in ``tx`` (the ledger
        row's transaction); returns the alert events to emit after commit.

        Nothing is refused: the money is spent, so it counts even past a limit, and the
        calls admitted after it are refused. ``at`` picks the period charged (default now).
        """
        at = at or self._clock()
        plan = self._planner.plan(tags, at)
        if plan is None:
            return []
        totals = sql.read(tx, plan.keys)
        if plan.view is None:  # (kept only by a transaction of our own: this one is the caller's)
            plan = Plan(plan.entries, plan.keys, plan.floor, plan.lease, self._view(tx, plan, totals)[0])
        return self._apply(tx, plan, sql.delta(spent=normalize(cost_usd or _ZERO) or _ZERO, tokens=tokens), at)


def _ceil18(usd: Decimal) -> Decimal:
    """A hold in whole 1e-18 USD, rounded up (it stays an upper bound)."""
    exp = usd.as_tuple().exponent
    return usd.quantize(_ATTO, rounding=ROUND_CEILING) if isinstance(exp, int) and exp < -18 else usd


def _cap(worst: Worst, plan: Plan, view: View, totals: dict[sql.Key, sql.Total]) -> int:
    """The output cap of a request that has none: the model's maximum whenever every
    matching budget can pay for it. Otherwise what the budget can still pay for; and while
    other calls hold money in it, half of that, so the calls of a burst share what is left
    instead of the first taking it all. Never below the budgets' ``min_output_tokens``
    (then the fit check refuses the call). Per counter its tightest budget decides
    (`View.limits`): what a budget leaves grows with its limit, and `_share` with that."""
    floor = min(worst.model_max, plan.floor)
    cap = worst.model_max
    for key, lim in view.limits.items():
        t = totals[key]
        if lim.usd is not None and worst.prompt_usd is not None and worst.per_output_usd > 0:
            left = lim.usd - t.spent - t.held - worst.prompt_usd
            cap = min(cap, _share(int((left / worst.per_output_usd).to_integral_value(ROUND_FLOOR)),
                                  t.held_requests, floor, worst.model_max))
        if lim.tokens is not None:
            left_tokens = lim.tokens - t.tokens - t.held_tokens - worst.prompt_tokens
            cap = min(cap, _share(left_tokens, t.held_requests, floor, worst.model_max))
    return max(cap, floor)


def _before(rows: list[Any], nano: int, atto_: int, tokens: int) -> dict[sql.Key, sql.Total]:
    """The counters as they were before a hold of ``(nano, atto_)`` USD and ``tokens``."""
    d = sql.moves(held=(nano, atto_), held_tokens=tokens, held_requests=1)
    return {k: t.minus(d) for k, t in sql.totals(rows).items()}


def _fits(spec: BudgetSpec, st: sql.State, usd: Decimal | None, tokens: int) -> bool:
    if spec.limit_usd is not None and (usd is None or st.spent_usd + st.held_usd + usd > spec.limit_usd):
        return False  # an unpriced call cannot be bounded, so a money budget cannot admit it
    if spec.limit_tokens is not None and st.tokens + st.held_tokens + tokens > spec.limit_tokens:
        return False
    return spec.limit_requests is None or st.requests + st.held_requests + 1 <= spec.limit_requests


def _fraction(spec: BudgetSpec, st: sql.State) -> float:
    parts = []
    if spec.limit_usd:
        parts.append(float((st.spent_usd + st.held_usd) / spec.limit_usd))
    if spec.limit_tokens:
        parts.append((st.tokens + st.held_tokens) / spec.limit_tokens)
    if spec.limit_requests:
        parts.append((st.requests + st.held_requests) / spec.limit_requests)
    return max(parts, default=1.0)


def _share(affordable: int, others_in_flight: int, floor: int, model_max: int) -> int:
    """What one call may take of the ``affordable`` output tokens: all it can use (the model's
    maximum) when that fits or it is alone; else half (but at least ``floor``) when other
    calls hold money in the same budget."""
    if affordable >= model_max or not others_in_flight:
        return affordable
    return min(affordable, max(affordable // 2, floor))


def _refusal(spec: BudgetSpec, slot: sql.Slot, resets: datetime | None, st: sql.State,
             usd: Decimal | None, tokens: int, now: datetime) -> errors.BudgetExceededError:
    limit: Decimal | int | None
    spent: Decimal | int
    held: Decimal | int
    est: Decimal | int | None
    if spec.limit_usd is not None:
        limit, spent, held, est, unit = spec.limit_usd, st.spent_usd, st.held_usd, usd, "usd"
    elif spec.limit_tokens is not None:
        limit, spent, held, est, unit = spec.limit_tokens, st.tokens, st.held_tokens, tokens, "tokens"
    else:
        limit, spent, held, est, unit = spec.limit_requests, st.requests, st.held_requests, 1, "requests"
    # held, not spent: the call would fit if the calls in flight gave their holds back
    idle = sql.State(st.spent_usd, st.tokens, st.requests, _ZERO, 0, 0)
    retry: float | None = HELD_RETRY_SECONDS
    reason = "held" if st.held_requests and _fits(spec, idle, usd, tokens) else "spent"
    if reason == "spent":
        retry = None if resets is None else max((resets - now).total_seconds(), 0.0)
    return errors.BudgetExceededError(spec.name, scope=_scope_dict(slot.scope), period=slot.period,
                                      limit=limit, spent=spent, reserved=held, estimate=est,
                                      resets_at=resets.isoformat() if resets else None, unit=unit,
                                      reason=reason, retry_after=retry)


def _scope_dict(scope: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in scope.split(",") if part)


def _status_row(spec: BudgetSpec, scope: str, period: str, resets: datetime | None,
                st: sql.State) -> dict[str, Any]:
    row: dict[str, Any] = {"budget": spec.name, "scope": _scope_dict(scope), "period": period,
                           "resets_at": resets.isoformat() if resets else None, "on_exceed": spec.on_exceed,
                           "spent_usd": st.spent_usd, "reserved_usd": st.held_usd,
                           "tokens": st.tokens, "requests": st.requests, "in_flight": st.held_requests}
    if spec.limit_usd is not None:
        row |= {"limit_usd": spec.limit_usd, "remaining_usd": spec.limit_usd - st.spent_usd - st.held_usd}
    if spec.limit_tokens is not None:
        row |= {"limit_tokens": spec.limit_tokens}
    if spec.limit_requests is not None:
        row |= {"limit_requests": spec.limit_requests}
    row["used"] = _fraction(spec, st)
    return row
