"""`Budgets`: admit a call only if its worst case fits, then settle what it really cost.

Admission is one transaction over every budget whose scope matches the call, in a
fixed number of statements whatever their number (`store.lock_all`): lock the slots, count expired holds at their worst case, check settled spend + live
holds + this call's worst case against the limit, and write a hold (and, when
given, the call's write-ahead ``in_flight`` ledger row). When the request has no
``max_tokens``, the cap is chosen here, inside the lock (see `Budgets._cap`), so the
hold is a true upper bound. While the call lives, `Heartbeat` renews its hold, up
to the call's deadline. Settlement happens in the ledger row's transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from fractions import Fraction
from typing import Any

from .. import errors
from . import store as sql
from .alerts import Alerts, warn_over
from .heartbeat import Heartbeat
from .spec import BudgetSpec, parse_budgets

_ZERO = Decimal(0)

#: a prompt count that is only an estimate (a vendor whose tokenizer is not tiktoken) is
#: raised by this factor before it is held, so the hold stays an upper bound
ESTIMATE_MARGIN = Fraction(13, 10)
#: ``retry_after`` of a refusal caused by holds in flight: they settle at what their calls
#: really cost (usually far below the hold) as soon as those calls end
HELD_RETRY_SECONDS = 2.0


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
        """The worst case of a call at ``price`` (None: unpriced).

        The prompt is priced at the dearest input rate (uncached, or a cache write),
        each output token at the output rate of the tier the prompt falls in. A count
        that is not tiktoken-exact gets ``ESTIMATE_MARGIN`` so the bound still holds.
        """
        if not exact:
            prompt_tokens = -(-prompt_tokens * ESTIMATE_MARGIN.numerator // ESTIMATE_MARGIN.denominator)
        if price is None:
            return cls(None, _ZERO, prompt_tokens, max_tokens, model_max)
        prompt, per_output = price.worst_case(prompt_tokens)
        return cls(prompt, per_output, prompt_tokens, max_tokens, model_max)

    def usd(self, cap: int) -> Decimal | None:
        return None if self.prompt_usd is None else self.prompt_usd + self.per_output_usd * cap


@dataclass
class Hold:
    """Money set aside for one call in every matching budget slot."""

    id: str
    slots: list[tuple[BudgetSpec, sql.Slot]]
    usd: Decimal
    tokens: int
    cap: int                          # the max_tokens the call must be sent with
    lease: float = 0.0                # seconds a renewal extends the hold by
    deadline: datetime | None = None  # renewed until then, no longer
    flight: bool = False              # a write-ahead ledger row (id = this hold's id) exists


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
        self.specs = list(specs)
        self._store, self._clock, self._tz, self.alerts = store, clock, timezone, alerts
        self._heartbeat = Heartbeat(self._renew, clock)

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
        self.specs.append(parsed)
        return parsed

    def on(self, event: str, fn: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
        return self.alerts.on(event, fn)

    def matching(self, tags: Mapping[str, str], now: datetime) -> list[tuple[BudgetSpec, sql.Slot, datetime | None]]:
        out = []
        windows: dict[tuple[str, str | None], tuple[str, datetime | None]] = {}  # one per period and zone
        for spec in self.specs:
            scope = spec.scope_key(tags)
            if scope is not None:
                w = windows.get((spec.period, spec.timezone))
                if w is None:
                    w = windows[(spec.period, spec.timezone)] = spec.window(now, self._tz)
                out.append((spec, sql.Slot(spec.name, scope, w[0]), w[1]))
        return out

    # ── admission ────────────────────────────────────────────────────────────

    def admit(self, tags: Mapping[str, str], worst: Worst, now: datetime | None = None, *,
              flight: Callable[[], Any] | None = None, deadline: float | None = None) -> Admission:
        """Hold ``worst`` in every matching budget, or say which one refuses.

        ``flight``: makes the call's ``in_flight`` `CallRecord`, written in the hold's
        transaction when the call is admitted (its id becomes the hold's id); ``deadline``:
        seconds after which the hold is no longer renewed.
        """
        now = now or self._clock()
        slots = self.matching(tags, now)
        if not slots:
            return Admission()
        with self._store().transaction() as tx:
            locked = sql.lock_all(tx, [slot for _, slot, _ in slots], now)
            states = [(spec, slot, resets, st) for (spec, slot, resets), st in zip(slots, locked)]
            cap = worst.max_tokens if worst.max_tokens is not None else self._cap(worst, states)
            usd, tokens = worst.usd(cap), worst.prompt_tokens + cap
            adm = Admission()
            for spec, slot, resets, state in states:
                if _fits(spec, state, usd, tokens):
                    continue
                event = self._event("budget.exceeded", spec, slot, state.spent_usd, resets)
                if sql.claim_alert(tx, slot, "exceeded", now):
                    adm.events.append(event)
                if spec.on_exceed == "warn":
                    warn_over(spec, slot.key)
                elif adm.denied is None:
                    adm.denied = _refusal(spec, slot, resets, state, usd, tokens, now)
                    adm.denied_spec = spec
            if adm.denied is not None:
                return adm
            lease = min(s.lease_seconds for s, *_ in states)
            record = flight() if flight is not None else None
            hold_id = record.id if record is not None else uuid.uuid4().hex
            sql.hold(tx, [slot for _, slot, _ in slots], hold_id, usd or _ZERO, tokens,
                     now + timedelta(seconds=lease))
            if record is not None:
                tx.record(record)
        adm.hold = Hold(hold_id, [(s, slot) for s, slot, _ in slots], usd or _ZERO, tokens, cap, lease,
                        None if deadline is None else now + timedelta(seconds=deadline), flight is not None)
        self._heartbeat.watch(adm.hold)
        return adm

    @staticmethod
    def _cap(worst: Worst, states: list[tuple[BudgetSpec, sql.Slot, Any, sql.State]]) -> int:
        """The output cap of a request that has none: the model's maximum whenever every
        matching budget can pay for it. Otherwise what the budget can still pay for; and while
        other calls hold money in it, half of that, so the calls of a burst share what is left
        instead of the first taking it all. Never below the budgets' ``min_output_tokens``
        (then the fit check refuses the call)."""
        floor = min(worst.model_max, max(spec.min_output_tokens for spec, *_ in states))
        cap = worst.model_max
        for spec, _, _, st in states:
            if spec.limit_usd is not None and worst.prompt_usd is not None and worst.per_output_usd > 0:
                left = spec.limit_usd - st.spent_usd - st.held_usd - worst.prompt_usd
                cap = min(cap, _share(int((left / worst.per_output_usd).to_integral_value(ROUND_FLOOR)),
                                      st.held_requests, floor, worst.model_max))
            if spec.limit_tokens is not None:
                left_tokens = spec.limit_tokens - st.tokens - st.held_tokens - worst.prompt_tokens
                cap = min(cap, _share(left_tokens, st.held_requests, floor, worst.model_max))
        return max(cap, floor)

    def renew(self, now: datetime | None = None) -> int:
        """Renew the leases of this process's live holds now (the heartbeat does this every
        ``lease / 3``); how many were renewed."""
        return self._heartbeat.beat(now)

    def _renew(self, holds: list[Hold], now: datetime) -> None:
        with self._store().transaction() as tx:
            for h in holds:
                sql.renew(tx, h.id, now + timedelta(seconds=h.lease))

    def reconcile(self, now: datetime | None = None) -> int:
        """Count every expired hold at its worst case (its ``in_flight`` row becomes
        ``unknown``), whichever budget it is in, configured here or not; how many calls."""
        now = now or self._clock()
        with self._store().transaction() as tx:
            rows = tx.execute(f"SELECT DISTINCT id FROM {sql.HOLDS} WHERE expires_at < ?",
                              (sql.stamp(now),)).fetchall()
            sql.lock_all(tx, sql.expired_slots(tx, now), now)
        return len(rows)

    # ── settlement (inside the ledger row's transaction) ─────────────────────

    def settle(self, tx: Any, hold: Hold, cost: Decimal | None, tokens: int,
               now: datetime | None = None) -> list[dict[str, Any]]:
        """Turn the hold into actual spend; returns the events to emit after commit."""
        now = now or self._clock()
        self._heartbeat.forget(hold.id)
        if hold.flight:
            sql.forget_flight(tx, hold.id)
        events = []
        spent = sql.settle(tx, [slot for _, slot in hold.slots], hold.id, cost or _ZERO, tokens, hold.usd,
                           hold.tokens)
        for (spec, slot), (before, after) in zip(hold.slots, spent):
            if not spec.limit_usd:
                continue
            if before == after:
                continue
            # a threshold is claimed by the settlement that crosses it, in the same transaction,
            # so it fires once even across processes (the claim's primary key makes sure)
            for frac in spec.alert_at:
                line = spec.limit_usd * Decimal(str(frac))
                if before < line <= after and sql.claim_alert(tx, slot, str(frac), now):
                    events.append({**self._event("budget.alert", spec, slot, after, self._resets(spec, slot, now)),
                                   "threshold": frac})
            if before <= spec.limit_usd < after and sql.claim_alert(tx, slot, "exceeded", now):
                events.append(self._event("budget.exceeded", spec, slot, after, self._resets(spec, slot, now)))
        return events

    def _resets(self, spec: BudgetSpec, slot: sql.Slot, now: datetime) -> datetime | None:
        return spec.window(now, self._tz)[1] if slot.period != "total" else None

    def release(self, tx: Any, hold: Hold) -> None:
        self._heartbeat.forget(hold.id)
        if hold.flight:
            sql.forget_flight(tx, hold.id)
        sql.release(tx, [slot for _, slot in hold.slots], hold.id, hold.usd, hold.tokens)

    # ── visibility ───────────────────────────────────────────────────────────

    def status(self) -> list[dict[str, Any]]:
        """Spent, reserved, remaining and reset time per budget and scope."""
        now = self._clock()
        out = []
        with self._store().transaction() as tx:
            for spec in self.specs:
                period, resets = spec.window(now, self._tz)
                if "*" in spec.scope.values():
                    scopes = sql.slots_of(tx, spec.name, period)
                else:
                    scopes = [spec.scope_key(spec.scope) or ""]
                for scope in scopes:
                    st = sql.lock(tx, sql.Slot(spec.name, scope, period), now)
                    out.append(_status_row(spec, scope, period, resets, st))
        return out

    def used_fraction(self, tags: Mapping[str, str]) -> float | None:
        """How full the tightest matching budget is (spent + held over limit), for rules."""
        now = self._clock()
        slots = self.matching(tags, now)
        if not slots:
            return None
        worst = 0.0
        with self._store().transaction() as tx:
            for (spec, _, _), st in zip(slots, sql.lock_all(tx, [slot for _, slot, _ in slots], now)):
                worst = max(worst, _fraction(spec, st))
        return worst

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
        slots = [(spec, slot) for spec, slot, _ in self.matching(tags, at)]
        sql.lock_all(tx, [slot for _, slot in slots], at)  # creates the rows; no admission interleaves
        # settling a hold of nothing adds the spend and fires the thresholds it crosses
        return self.settle(tx, Hold("charge:" + uuid.uuid4().hex, slots, _ZERO, 0, 0), cost_usd, tokens, at)


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
