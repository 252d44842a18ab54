"""Budget counters and holds in the ledger's database, in portable SQL.

Every function here runs inside the caller's transaction. `lock` takes the
(budget, scope, period) row first — SQLite's ``BEGIN IMMEDIATE`` already
serialises writers, PostgreSQL adds ``FOR UPDATE`` through the dialect — so the
read of spent and held money and the write of a new hold cannot interleave with
another process's: that is what makes a limit impossible to overshoot. A hold is
never refunded just because it expired (see `lock`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

SPEND = "unillm_budget_spend"
HOLDS = "unillm_budget_holds"
ALERTS = "unillm_budget_alerts"
_KEY = "budget = ? AND scope = ? AND period = ?"


@dataclass(frozen=True, slots=True)
class Slot:
    """One instance of a budget: a name, a scope value and a period."""

    budget: str
    scope: str
    period: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.budget, self.scope, self.period)


@dataclass(frozen=True, slots=True)
class State:
    """What a slot has used: settled spend plus live holds."""

    spent_usd: Decimal
    tokens: int
    requests: int
    held_usd: Decimal
    held_tokens: int
    held_requests: int


def stamp(at: datetime) -> str:
    """A UTC timestamp that sorts as text."""
    return at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lock(tx: Any, slot: Slot, now: datetime) -> State:
    """Lock the slot's row (creating it), settle expired holds, and read its state.

    A hold expires only when nothing renews it: its process died (or its call outlived its
    deadline). The vendor may still bill that call, so the hold becomes spend at its worst
    case, and the call's write-ahead ledger row becomes ``unknown`` at that cost; if the call
    does settle later, `settle` corrects both to what it really cost.
    """
    tx.execute(f"INSERT INTO {SPEND} (budget, scope, period) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
               slot.key)
    spent, tokens, requests = tx.execute(
        f"SELECT spent_usd, tokens, requests FROM {SPEND} WHERE {_KEY}{tx.dialect.for_update}",
        slot.key).fetchone()
    holds = tx.execute(f"SELECT id, amount_usd, tokens, expires_at FROM {HOLDS} WHERE {_KEY}",
                       slot.key).fetchall()
    cutoff = stamp(now)
    live = [(a, t) for _, a, t, exp in holds if exp >= cutoff]
    spent_d, tokens_i, requests_i = Decimal(spent), int(tokens), int(requests)
    if len(live) < len(holds):
        dead = [(i, Decimal(a), int(t)) for i, a, t, exp in holds if exp < cutoff]
        spent_d += sum((a for _, a, _ in dead), Decimal(0))
        tokens_i += sum(t for _, _, t in dead)
        requests_i += len(dead)
        tx.execute(f"UPDATE {SPEND} SET spent_usd = ?, tokens = ?, requests = ? WHERE {_KEY}",
                   (str(spent_d), tokens_i, requests_i, *slot.key))
        tx.execute(f"DELETE FROM {HOLDS} WHERE {_KEY} AND expires_at < ?", (*slot.key, cutoff))
        for hold_id, amount, _ in dead:
            abandon(tx, hold_id, amount, now)
    return State(spent_d, tokens_i, requests_i, sum((Decimal(a) for a, _ in live), Decimal(0)),
                 sum(int(t) for _, t in live), len(live))


def hold(tx: Any, slot: Slot, hold_id: str, amount: Decimal, tokens: int, expires: datetime) -> None:
    tx.execute(f"INSERT INTO {HOLDS} (id, budget, scope, period, amount_usd, tokens, expires_at) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)", (hold_id, *slot.key, str(amount), tokens, stamp(expires)))


def renew(tx: Any, hold_id: str, expires: datetime) -> None:
    """Push a live hold's lease out (every slot it is in)."""
    tx.execute(f"UPDATE {HOLDS} SET expires_at = ? WHERE id = ?", (stamp(expires), hold_id))


def _drop(tx: Any, slot: Slot, hold_id: str) -> bool:
    """Delete the hold; False when it was gone already (expired and counted at worst case)."""
    cur = tx.execute(f"DELETE FROM {HOLDS} WHERE id = ? AND budget = ? AND scope = ?",
                     (hold_id, slot.budget, slot.scope))
    return bool(cur.rowcount != 0)


def release(tx: Any, slot: Slot, hold_id: str, held_usd: Decimal = Decimal(0), held_tokens: int = 0) -> None:
    """Nothing was spent: give the hold back (and undo its worst case if it had expired)."""
    spent = _spent(tx, slot)  # the slot's row first, as admission locks it: no lock-order deadlock
    if not _drop(tx, slot, hold_id):
        tx.execute(f"UPDATE {SPEND} SET spent_usd = ?, tokens = tokens - ?, requests = requests - 1 "
                   f"WHERE {_KEY}", (str(spent - held_usd), held_tokens, *slot.key))


def settle(tx: Any, slot: Slot, hold_id: str, cost: Decimal, tokens: int,
           held_usd: Decimal = Decimal(0), held_tokens: int = 0) -> tuple[Decimal, Decimal]:
    """Turn the hold into spend; returns settled spend (before, after). The row exists:
    admission created it. A hold that expired was counted at its worst case (``held_usd``):
    that count is replaced by the real one."""
    before = _spent(tx, slot)
    if _drop(tx, slot, hold_id):
        after = before + cost
        tx.execute(f"UPDATE {SPEND} SET spent_usd = ?, tokens = tokens + ?, requests = requests + 1 "
                   f"WHERE {_KEY}", (str(after), tokens, *slot.key))
    else:
        after = before + cost - held_usd
        tx.execute(f"UPDATE {SPEND} SET spent_usd = ?, tokens = tokens + ? WHERE {_KEY}",
                   (str(after), tokens - held_tokens, *slot.key))
    return before, after


def _spent(tx: Any, slot: Slot) -> Decimal:
    row = tx.execute(f"SELECT spent_usd FROM {SPEND} WHERE {_KEY}{tx.dialect.for_update}", slot.key).fetchone()
    return Decimal(row[0]) if row else Decimal(0)


def abandon(tx: Any, hold_id: str, amount: Decimal, now: datetime) -> None:
    """The write-ahead ``in_flight`` row of a call whose hold expired becomes ``unknown`` at
    the hold's worst case (once, whichever of its slots notices first)."""
    from ..ledger.rows import SELECT_SQL, TABLE, from_row
    row = tx.execute(f"{SELECT_SQL} WHERE id = ? AND status = 'in_flight'", (hold_id,)).fetchone()
    if row is None:
        return
    rec = from_row(row)
    tx.execute(f"DELETE FROM {TABLE} WHERE id = ?", (hold_id,))
    tx.record(rec.replace(status="unknown", total_usd=amount, ended_at=now, error_class="LeaseExpired"))


def forget_flight(tx: Any, hold_id: str) -> None:
    """Remove a call's write-ahead row (``in_flight``, or ``unknown`` if its hold expired):
    the row of its real outcome is written in the same transaction."""
    from ..ledger.rows import TABLE
    tx.execute(f"DELETE FROM {TABLE} WHERE id = ? AND status IN ('in_flight', 'unknown')", (hold_id,))


def expired_slots(tx: Any, now: datetime) -> list[Slot]:
    """Every slot holding an expired hold (for `Budgets.reconcile`)."""
    rows = tx.execute(f"SELECT DISTINCT budget, scope, period FROM {HOLDS} WHERE expires_at < ?",
                      (stamp(now),)).fetchall()
    return [Slot(*r) for r in rows]


def claim_alert(tx: Any, slot: Slot, threshold: str, now: datetime) -> bool:
    """True for exactly one caller per (slot, threshold), across threads, processes and hosts."""
    cur = tx.execute(f"INSERT INTO {ALERTS} (budget, scope, period, threshold, fired_at) "
                     "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", (*slot.key, threshold, stamp(now)))
    return bool(cur.rowcount == 1)


def slots_of(tx: Any, budget: str, period: str) -> list[str]:
    """Scope values with a row for ``budget`` in ``period`` (for ``user = "*"`` status)."""
    rows = tx.execute(f"SELECT scope FROM {SPEND} WHERE budget = ? AND period = ? "
                      f"UNION SELECT scope FROM {HOLDS} WHERE budget = ? AND period = ?",
                      (budget, period, budget, period)).fetchall()
    return sorted(r[0] for r in rows)
