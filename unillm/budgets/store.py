"""Budget counters and holds in the ledger's database, in portable SQL.

Every function here runs inside the caller's transaction. `lock` takes the
(budget, scope, period) row first — SQLite's ``BEGIN IMMEDIATE`` already
serialises writers, PostgreSQL adds ``FOR UPDATE`` through the dialect — so the
read of spent and held money and the write of a new hold cannot interleave with
another process's: that is what makes a limit impossible to overshoot.
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
    """Lock the slot's row (creating it), reclaim expired holds, and read its state."""
    tx.execute(f"INSERT INTO {SPEND} (budget, scope, period) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
               slot.key)
    spent, tokens, requests = tx.execute(
        f"SELECT spent_usd, tokens, requests FROM {SPEND} WHERE {_KEY}{tx.dialect.for_update}",
        slot.key).fetchone()
    holds = tx.execute(f"SELECT amount_usd, tokens, expires_at FROM {HOLDS} WHERE {_KEY}", slot.key).fetchall()
    cutoff = stamp(now)
    live = [(a, t) for a, t, exp in holds if exp >= cutoff]
    if len(live) < len(holds):  # a crashed process's holds: give their money back
        tx.execute(f"DELETE FROM {HOLDS} WHERE {_KEY} AND expires_at < ?", (*slot.key, cutoff))
    return State(Decimal(spent), int(tokens), int(requests), sum((Decimal(a) for a, _ in live), Decimal(0)),
                 sum(int(t) for _, t in live), len(live))


def hold(tx: Any, slot: Slot, hold_id: str, amount: Decimal, tokens: int, expires: datetime) -> None:
    tx.execute(f"INSERT INTO {HOLDS} (id, budget, scope, period, amount_usd, tokens, expires_at) "
               "VALUES (?, ?, ?, ?, ?, ?, ?)", (hold_id, *slot.key, str(amount), tokens, stamp(expires)))


def release(tx: Any, slot: Slot, hold_id: str) -> None:
    tx.execute(f"DELETE FROM {HOLDS} WHERE id = ? AND budget = ? AND scope = ?", (hold_id, slot.budget, slot.scope))


def settle(tx: Any, slot: Slot, hold_id: str, cost: Decimal, tokens: int) -> tuple[Decimal, Decimal]:
    """Turn the hold into spend; returns settled spend (before, after). The row exists:
    admission created it."""
    row = tx.execute(f"SELECT spent_usd FROM {SPEND} WHERE {_KEY}{tx.dialect.for_update}", slot.key).fetchone()
    before = Decimal(row[0]) if row else Decimal(0)
    after = before + cost
    tx.execute(f"UPDATE {SPEND} SET spent_usd = ?, tokens = tokens + ?, requests = requests + 1 WHERE {_KEY}",
               (str(after), tokens, *slot.key))
    release(tx, slot, hold_id)
    return before, after


def claim_alert(tx: Any, slot: Slot, threshold: str, now: datetime) -> bool:
    """True for exactly one caller per (slot, threshold), across threads, processes and hosts."""
    cur = tx.execute(f"INSERT INTO {ALERTS} (budget, scope, period, threshold, fired_at) "
                     "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", (*slot.key, threshold, stamp(now)))
    return cur.rowcount == 1


def slots_of(tx: Any, budget: str, period: str) -> list[str]:
    """Scope values with a row for ``budget`` in ``period`` (for ``user = "*"`` status)."""
    rows = tx.execute(f"SELECT scope FROM {SPEND} WHERE budget = ? AND period = ? "
                      f"UNION SELECT scope FROM {HOLDS} WHERE budget = ? AND period = ?",
                      (budget, period, budget, period)).fetchall()
    return sorted(r[0] for r in rows)
