"""Budget counters and holds in the ledger's database, in portable SQL.

Every function here runs inside the caller's transaction, in a fixed number of
statements whatever the number of slots (one multi-row statement per `CHUNK` slots).
`lock_all` takes the (budget, scope, period) rows first — SQLite's ``BEGIN IMMEDIATE`` already
serialises writers, PostgreSQL adds ``FOR UPDATE`` through the dialect — so the
read of spent and held money and the write of a new hold cannot interleave with
another process's: that is what makes a limit impossible to overshoot. A hold is
never refunded just because it expired (see `lock`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, NamedTuple

SPEND = "unillm_budget_spend"
HOLDS = "unillm_budget_holds"
ALERTS = "unillm_budget_alerts"
_KEY = "budget = ? AND scope = ? AND period = ?"


class Slot(NamedTuple):
    """One instance of a budget: a name, a scope value and a period (a tuple: its own key)."""

    budget: str
    scope: str
    period: str

    @property
    def key(self) -> tuple[str, str, str]:
        return self


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
    """`lock_all` for one slot."""
    return lock_all(tx, [slot], now)[0]


def lock_all(tx: Any, slots: Sequence[Slot], now: datetime) -> list[State]:
    """Lock the slots' rows (creating them), settle expired holds, and read their states, in
    the order of ``slots``; three statements whatever their number (plus three per slot that
    holds an expired hold, which is rare).

    Rows are locked in key order everywhere (`_rows`), so two transactions over overlapping
    slots cannot deadlock. A hold expires only when nothing renews it: its process died (or
    its call outlived its deadline). The vendor may still bill that call, so the hold becomes
    spend at its worst case, and the call's write-ahead ledger row becomes ``unknown`` at that
    cost; if the call does settle later, `settle_all` corrects both to what it really cost.
    """
    ordered = sorted(set(slots))
    for part in _chunks(ordered):
        tx.execute(f"INSERT INTO {SPEND} (budget, scope, period) VALUES {_tuples(len(part), 3)} "
                   "ON CONFLICT DO NOTHING", _keys(part))
    rows = _rows(tx, ordered)
    holds: dict[tuple[str, str, str], list[tuple[Any, ...]]] = {}
    for part in _chunks(ordered):
        for h in tx.execute(f"{_wanted(len(part))} SELECT budget, scope, period, id, amount_usd, tokens, "
                            f"expires_at FROM k JOIN {HOLDS} ON {_JOIN}", _keys(part)).fetchall():
            holds.setdefault((h[0], h[1], h[2]), []).append(h)
    cutoff = stamp(now)
    states: dict[Slot, State] = {}
    abandoned: set[str] = set()
    for slot in ordered:
        spent, tokens, requests = rows.get(slot.key, ("0", 0, 0))
        mine = holds.get(slot.key, ())
        live = [(a, t) for *_, a, t, exp in mine if exp >= cutoff]
        spent_d, tokens_i, requests_i = Decimal(spent), int(tokens), int(requests)
        if len(live) < len(mine):
            dead = [(h[3], Decimal(h[4]), int(h[5])) for h in mine if h[6] < cutoff]
            spent_d += sum((a for _, a, _ in dead), Decimal(0))
            tokens_i += sum(t for _, _, t in dead)
            requests_i += len(dead)
            tx.execute(f"UPDATE {SPEND} SET spent_usd = ?, tokens = ?, requests = ? WHERE {_KEY}",
                       (str(spent_d), tokens_i, requests_i, *slot.key))
            tx.execute(f"DELETE FROM {HOLDS} WHERE {_KEY} AND expires_at < ?", (*slot.key, cutoff))
            for hold_id, amount, _ in dead:
                if hold_id not in abandoned:
                    abandoned.add(hold_id)
                    abandon(tx, hold_id, amount, now)
        held = sum((Decimal(a) for a, _ in live), Decimal(0)) if live else Decimal(0)
        states[slot] = State(spent_d, tokens_i, requests_i, held, sum(int(t) for _, t in live), len(live))
    return [states[s] for s in slots]


#: slots per statement (SQLite allows 32,766 parameters; PostgreSQL 65,535)
CHUNK = 500


def _chunks(slots: Sequence[Slot]) -> list[Sequence[Slot]]:
    return [slots[i:i + CHUNK] for i in range(0, len(slots), CHUNK)]


def _tuples(rows: int, width: int) -> str:
    one = "(" + ", ".join("?" * width) + ")"
    return ", ".join([one] * rows)


#: the slots wanted, as a table ``k`` joined on the primary key (or the holds' index): an index
#: probe per slot, where ``(budget, scope, period) IN (VALUES ...)`` scans the whole table
_JOIN = "budget = k.b AND scope = k.s AND period = k.p"


def _wanted(n: int) -> str:
    return f"WITH k (b, s, p) AS (VALUES {_tuples(n, 3)})"


def _keys(slots: Sequence[Slot]) -> list[str]:
    return [k for s in slots for k in s.key]


def _rows(tx: Any, ordered: Sequence[Slot]) -> dict[tuple[str, str, str], tuple[Any, Any, Any]]:
    """Lock and read the spend rows of ``ordered`` (sorted by key: one lock order for all)."""
    out: dict[tuple[str, str, str], tuple[Any, Any, Any]] = {}
    for part in _chunks(ordered):
        # PostgreSQL locks only the spend rows (not the VALUES list): FOR UPDATE OF the table
        lock = f"{tx.dialect.for_update} OF {SPEND}" if tx.dialect.for_update else ""
        for b, s, p, spent, tokens, requests in tx.execute(
                f"{_wanted(len(part))} SELECT budget, scope, period, spent_usd, tokens, requests "
                f"FROM k JOIN {SPEND} ON {_JOIN} ORDER BY budget, scope, period{lock}", _keys(part)).fetchall():
            out[(b, s, p)] = (spent, tokens, requests)
    return out


def _write(tx: Any, values: list[tuple[Slot, Decimal, int, int]]) -> None:
    """Set each slot's settled spend, tokens and requests: one upsert per `CHUNK` slots."""
    for i in range(0, len(values), CHUNK):
        part = values[i:i + CHUNK]
        params = [x for slot, usd, tok, req in part for x in (*slot.key, str(usd), tok, req)]
        tx.execute(f"INSERT INTO {SPEND} (budget, scope, period, spent_usd, tokens, requests) "
                   f"VALUES {_tuples(len(part), 6)} ON CONFLICT (budget, scope, period) DO UPDATE SET "
                   "spent_usd = excluded.spent_usd, tokens = excluded.tokens, requests = excluded.requests",
                   params)


def hold(tx: Any, slots: Sequence[Slot], hold_id: str, amount: Decimal, tokens: int,
         expires: datetime) -> None:
    """Write the hold in every slot: one statement per `CHUNK` slots."""
    exp = stamp(expires)
    for part in _chunks(slots):
        params = [x for s in part for x in (hold_id, *s.key, str(amount), tokens, exp)]
        tx.execute(f"INSERT INTO {HOLDS} (id, budget, scope, period, amount_usd, tokens, expires_at) "
                   f"VALUES {_tuples(len(part), 7)}", params)


def renew(tx: Any, hold_id: str, expires: datetime) -> None:
    """Push a live hold's lease out (every slot it is in)."""
    tx.execute(f"UPDATE {HOLDS} SET expires_at = ? WHERE id = ?", (stamp(expires), hold_id))


def _take(tx: Any, slots: Sequence[Slot], hold_id: str) -> tuple[dict[tuple[str, str, str], tuple[Any, Any, Any]],
                                                                  set[tuple[str, str]]]:
    """Lock the slots' rows (in key order, as admission does: no lock-order deadlock), then
    delete the hold; (the rows, the (budget, scope) pairs whose hold was still there — the
    others expired and were counted at their worst case)."""
    rows = _rows(tx, sorted(set(slots)))
    had = {(b, s) for b, s in tx.execute(f"SELECT budget, scope FROM {HOLDS} WHERE id = ?", (hold_id,)).fetchall()}
    if had:
        tx.execute(f"DELETE FROM {HOLDS} WHERE id = ?", (hold_id,))
    return rows, had


def release(tx: Any, slots: Sequence[Slot], hold_id: str, held_usd: Decimal = Decimal(0),
            held_tokens: int = 0) -> None:
    """Nothing was spent: give the hold back (and undo its worst case where it had expired)."""
    rows, had = _take(tx, slots, hold_id)
    undo = []
    for slot in slots:
        if (slot.budget, slot.scope) not in had and slot.key in rows:
            spent, tokens, requests = rows[slot.key]
            undo.append((slot, Decimal(spent) - held_usd, int(tokens) - held_tokens, int(requests) - 1))
    _write(tx, undo)


def settle(tx: Any, slots: Sequence[Slot], hold_id: str, cost: Decimal, tokens: int,
           held_usd: Decimal = Decimal(0), held_tokens: int = 0) -> list[tuple[Decimal, Decimal]]:
    """Turn the hold into spend; settled spend (before, after) per slot, in the order of
    ``slots``. A hold that expired was counted at its worst case (``held_usd``): that count is
    replaced by the real one. Four statements whatever the number of slots."""
    rows, had = _take(tx, slots, hold_id)
    out, values = [], []
    for slot in slots:
        spent, tok, req = rows.get(slot.key, ("0", 0, 0))
        before = Decimal(spent)
        if (slot.budget, slot.scope) in had:
            after, tok_after, req_after = before + cost, int(tok) + tokens, int(req) + 1
        else:
            after, tok_after, req_after = before + cost - held_usd, int(tok) + tokens - held_tokens, int(req)
        out.append((before, after))
        values.append((slot, after, tok_after, req_after))
    _write(tx, values)
    return out


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
