"""Budget totals, bases and in-flight calls in the ledger's database, in portable SQL.

Three tables (migration ``0015_budget_totals``), so a call costs the same few statements
whatever the number of budgets it matches:

* ``unillm_budget_totals``: one row per *counter*, a (scope, window) pair — the scope value
  (``"user=u1"``, ``""`` for global) and the period in its timezone (``"2026-05|UTC"``,
  ``"total"``). Every budget with that scope and period reads the same counter, so a call
  under 100 budgets on 3 scopes touches 3 rows. Money is exact integer ``(nano, atto)`` pairs
  (`unillm.ledger.money`), so settlement adds in SQL: one ``UPDATE ... RETURNING``.
* ``unillm_budget_bases``: per budget instance, the counter's value when the budget first
  saw it; the budget's spend is the counter minus its base. Written once, never changed,
  so a process reads each base once and keeps it.
* ``unillm_budget_flights``: one row per call in flight: its hold (worst case, lease) and
  the write-ahead description of the call (on SQLite one b-tree keyed by its id, ``WITHOUT
  ROWID``, since ``0016_budget_flights``; not indexed by expiry since ``0017``: each call
  inserts and deletes one). A process killed mid-call leaves it; once its lease lapses, the next admission moves its hold into spend at the worst case and writes
  the call's ledger row as ``unknown`` (`take_expired`), never refunded.

Every function runs inside the caller's transaction. SQLite's ``BEGIN IMMEDIATE`` serialises
writers; PostgreSQL locks the counter rows (`read`, ``FOR UPDATE``, in key order everywhere:
no lock-order deadlock), and skips flight rows another transaction holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, NamedTuple

from ..ledger.money import join, normalize, split

TOTALS = "unillm_budget_totals"
BASES = "unillm_budget_bases"
FLIGHTS = "unillm_budget_flights"
ALERTS = "unillm_budget_alerts"
#: the per-budget spend rows of schemas before 0015 (read once per budget instance: `_legacy`)
LEGACY = "unillm_budget_spend"
#: a counter: (scope value, window)
Key = tuple[str, str]
_ZERO = Decimal(0)
_ATTO_PER_USD = 10**18
_COLS = "spent_nano, spent_atto, tokens, requests, held_nano, held_atto, held_tokens, held_requests"


class Slot(NamedTuple):
    """One instance of a budget: a name, a scope value and a period label (alerts, events)."""

    budget: str
    scope: str
    period: str

    @property
    def key(self) -> tuple[str, str, str]:
        return self


@dataclass(frozen=True, slots=True)
class State:
    """What a budget instance has used: settled spend plus live holds."""

    spent_usd: Decimal
    tokens: int
    requests: int
    held_usd: Decimal
    held_tokens: int
    held_requests: int


@dataclass(frozen=True, slots=True)
class Total:
    """A counter as stored: integer money pairs, so deltas are exact integer arithmetic."""

    spent_nano: int
    spent_atto: int
    tokens: int
    requests: int
    held_nano: int
    held_atto: int
    held_tokens: int
    held_requests: int

    @property
    def spent(self) -> Decimal:
        return join(self.spent_nano, self.spent_atto)

    @property
    def held(self) -> Decimal:
        return join(self.held_nano, self.held_atto)

    def minus(self, d: Delta) -> Total:
        return Total(*(a - b for a, b in zip(self.row(), d)))

    def row(self) -> tuple[int, ...]:
        return (self.spent_nano, self.spent_atto, self.tokens, self.requests, self.held_nano, self.held_atto,
                self.held_tokens, self.held_requests)


ZERO_TOTAL = Total(0, 0, 0, 0, 0, 0, 0, 0)

#: what a statement adds to counters, in `_COLS` order
Delta = tuple[int, int, int, int, int, int, int, int]


def pair(usd: Decimal) -> tuple[int, int]:
    n, a = split(usd)
    return n or 0, a or 0


def exact_pair(usd: Decimal) -> tuple[int, int]:
    """`pair` of ``usd`` normalized (`unillm.ledger.money.normalize`: rounded half-even to
    1e-18 USD, as its ledger row says), without a Decimal operation when it has at most 18
    decimal places, as prices give."""
    try:
        n, d = usd.as_integer_ratio()
    except (ValueError, OverflowError):  # not finite: normalize says so
        return pair(normalize(usd) or _ZERO)
    if _ATTO_PER_USD % d:
        return pair(normalize(usd) or _ZERO)
    return divmod(n * (_ATTO_PER_USD // d), 10**9)


def delta(spent: Decimal = _ZERO, tokens: int = 0, requests: int = 0, held: Decimal = _ZERO,
          held_tokens: int = 0, held_requests: int = 0, *, unspent: Decimal = _ZERO,
          unheld: Decimal = _ZERO) -> Delta:
    """A `Delta`; amounts taken away are the negated pairs of positive amounts (``unspent``,
    ``unheld``), so a hold given back leaves its counter's pair exactly as it was."""
    sn, sa = pair(spent)
    un, ua = pair(unspent)
    hn, ha = pair(held)
    rn, ra = pair(unheld)
    return (sn - un, sa - ua, tokens, requests, hn - rn, ha - ra, held_tokens, held_requests)


def moves(*, spent: tuple[int, int] = (0, 0), tokens: int = 0, requests: int = 0,
          held: tuple[int, int] = (0, 0), held_tokens: int = 0, held_requests: int = 0) -> Delta:
    """A `Delta` from amounts already split into ``(nano, atto)`` pairs (`pair`; a pair taken
    away is negated part by part): `delta` without Decimal, for settlement's hot path."""
    return (spent[0], spent[1], tokens, requests, held[0], held[1], held_tokens, held_requests)


def stamp(at: datetime) -> float:
    """A lease expiry as Unix seconds."""
    return at.timestamp()


# ── counters ─────────────────────────────────────────────────────────────────

def _values(n: int) -> str:
    return f"WITH k (s, p) AS (VALUES {', '.join(['(?, ?)'] * n)})"


def _flat(keys: Sequence[Key]) -> list[str]:
    return [x for k in keys for x in k]


def read(tx: Any, keys: Iterable[Key]) -> dict[Key, Total]:
    """Lock (PostgreSQL) and read the counters, creating the missing ones."""
    ordered = sorted(set(keys))
    if not ordered:
        return {}
    out = _read(tx, ordered)
    if len(out) < len(ordered):
        missing = [k for k in ordered if k not in out]
        tx.execute(f"INSERT INTO {TOTALS} (scope, period) VALUES {', '.join(['(?, ?)'] * len(missing))} "
                   "ON CONFLICT DO NOTHING", _flat(missing))
        out = _read(tx, ordered)
    return out


def _read(tx: Any, ordered: Sequence[Key]) -> dict[Key, Total]:
    lock = f"{tx.dialect.for_update} OF {TOTALS}" if tx.dialect.for_update else ""
    rows = tx.execute(f"{_values(len(ordered))} SELECT scope, period, {_COLS} FROM k JOIN {TOTALS} "
                      f"ON scope = k.s AND period = k.p ORDER BY scope, period{lock}", _flat(ordered)).fetchall()
    return {(r[0], r[1]): Total(*(int(v) for v in r[2:])) for r in rows}


@lru_cache(maxsize=256)
def _update(n: int, cols: tuple[str, ...], returning: bool) -> str:
    """``UPDATE`` adding a parameter to each of ``cols`` of ``n`` counters (parameters: the
    amounts, then the keys); the one SQL text per shape, so the connection's statement cache
    keeps it prepared."""
    sets = ", ".join(f"{c} = {c} + ?" for c in cols)
    ret = f" RETURNING scope, period, {_COLS}" if returning else ""
    if n == 1:
        return f"UPDATE {TOTALS} SET {sets} WHERE scope = ? AND period = ?{ret}"
    return (f"UPDATE {TOTALS} SET {sets} FROM (VALUES {', '.join(['(?, ?)'] * n)}) AS k "
            f"WHERE scope = k.column1 AND period = k.column2{ret}")


_ALL = tuple(_COLS.split(", "))
_HELD = ("held_nano", "held_atto", "held_tokens", "held_requests")


def bump(tx: Any, keys: Sequence[Key], d: Delta, *, returning: bool = False, flat: Sequence[str] = ()) -> list[Any]:
    """Add ``d`` to every counter of ``keys`` in one statement (the rows exist: `read` made
    them); with ``returning``, the counters' rows after it (scope, period, then `_COLS`: see
    `totals`). ``flat``: the keys flattened, if known."""
    cur = tx.execute(_update(len(keys), _ALL, returning), [*d, *(flat or _flat(keys))])
    return list(cur.fetchall()) if returning else []


def totals(rows: Iterable[Any]) -> dict[Key, Total]:
    """Counter rows as `Total` objects by key."""
    return {(r[0], r[1]): Total(*(int(v) for v in r[2:])) for r in rows}


def hold(tx: Any, n: int, flat: Sequence[str], nano: int, atto: int, tokens: int, requests: int = 1) -> list[Any]:
    """Raise the held money, tokens and requests of ``n`` counters (``flat``: their keys
    flattened) by one call's hold; the counters' rows after it (fewer than ``n``: some
    counter does not exist yet)."""
    return list(tx.execute(_update(n, _HELD, True), (nano, atto, tokens, requests, *flat)).fetchall())


# ── bases ────────────────────────────────────────────────────────────────────

Base = tuple[Decimal, int, int]  # spent, tokens, requests when the budget first saw its counter


def bases(tx: Any, wanted: Sequence[tuple[str, str, str]], totals: dict[Key, Total]) -> dict[tuple[str, str, str],
                                                                                             Base]:
    """The bases of ``wanted`` (budget, scope, window), each created at its counter's settled
    value where missing (``totals``: the counters, read and locked in this transaction)."""
    out: dict[tuple[str, str, str], Base] = {}
    ordered = sorted(set(wanted))
    if not ordered:
        return out
    legacy = _legacy(tx, ordered)
    params: list[Any] = []
    for b, s, w in ordered:
        t = totals.get((s, w), ZERO_TOTAL)
        usd, tokens, requests = legacy.get((b, s, w.partition("|")[0]), (_ZERO, 0, 0))
        n, a = pair(usd)
        params += [b, s, w, t.spent_nano - n, t.spent_atto - a, t.tokens - tokens, t.requests - requests]
    tx.execute(f"INSERT INTO {BASES} (budget, scope, period, spent_nano, spent_atto, tokens, requests) VALUES "
               f"{', '.join(['(?, ?, ?, ?, ?, ?, ?)'] * len(ordered))} ON CONFLICT DO NOTHING", params)
    rows = tx.execute(f"WITH k (b, s, p) AS (VALUES {', '.join(['(?, ?, ?)'] * len(ordered))}) "
                      f"SELECT budget, scope, period, spent_nano, spent_atto, tokens, requests FROM k JOIN {BASES} "
                      "ON budget = k.b AND scope = k.s AND period = k.p",
                      [x for key in ordered for x in key]).fetchall()
    for b, s, w, n, a, tok, req in rows:
        out[(b, s, w)] = (join(int(n), int(a)), int(tok), int(req))
    return out


def _legacy(tx: Any, wanted: Sequence[tuple[str, str, str]]) -> dict[tuple[str, str, str], tuple[Decimal, int, int]]:
    """What a budget had spent in its period before ``0015_budget_totals`` (its row in the
    former per-budget table, by period label): its base starts that much below its counter,
    so an upgrade neither resets nor doubles a budget."""
    keys = [(b, s, w.partition("|")[0]) for b, s, w in wanted]
    rows = tx.execute(f"WITH k (b, s, p) AS (VALUES {', '.join(['(?, ?, ?)'] * len(keys))}) "
                      f"SELECT budget, scope, period, spent_usd, tokens, requests FROM k JOIN {LEGACY} "
                      "ON budget = k.b AND scope = k.s AND period = k.p", [x for k in keys for x in k]).fetchall()
    return {(r[0], r[1], r[2]): (Decimal(r[3]), int(r[4]), int(r[5])) for r in rows}


def scopes_of(tx: Any, budget: str, window: str) -> list[str]:
    """Scope values a budget has seen in ``window`` (for ``user = "*"`` status)."""
    rows = tx.execute(f"SELECT scope FROM {BASES} WHERE budget = ? AND period = ?", (budget, window)).fetchall()
    return sorted(r[0] for r in rows)


# ── flights: a call's hold and its write-ahead row, one row ─────────────────────

def counters(keys: Sequence[Key]) -> str:
    """The ``counters`` column of a flight on ``keys``."""
    return json.dumps(keys, separators=(",", ":"))


def add_flight(tx: Any, flight_id: str, keys: str, amount: str, tokens: int, expires: float,
               call: str | None) -> None:
    """Write a call's flight row: ``keys`` its counters (`counters`), ``amount`` its hold in
    USD as plain decimal text, ``expires`` its lease expiry in Unix seconds."""
    tx.execute(f"INSERT INTO {FLIGHTS} (id, counters, amount_usd, tokens, expires_at, call) VALUES (?, ?, ?, ?, ?, ?)",
               (flight_id, keys, amount, tokens, expires, call))


def drop_flight(tx: Any, flight_id: str) -> bool:
    """Remove a call's flight row; False when it was gone (its lease lapsed and another
    transaction counted it at its worst case)."""
    return bool(tx.execute(f"DELETE FROM {FLIGHTS} WHERE id = ?", (flight_id,)).rowcount == 1)


def renew(tx: Any, flight_id: str, expires: datetime) -> None:
    tx.execute(f"UPDATE {FLIGHTS} SET expires_at = ? WHERE id = ?", (stamp(expires), flight_id))


class Lapsed(NamedTuple):
    id: str
    keys: list[Key]
    amount: Decimal
    tokens: int
    call: str | None


def expired(tx: Any, now: datetime) -> list[Lapsed]:
    """Flights whose lease lapsed (their process died, or their call outlived its deadline);
    on PostgreSQL locked, skipping those another transaction is settling."""
    skip = f"{tx.dialect.for_update} SKIP LOCKED" if tx.dialect.for_update else ""
    rows = tx.execute(f"SELECT id, counters, amount_usd, tokens, call FROM {FLIGHTS} WHERE expires_at < ? "
                      f"ORDER BY id{skip}", (stamp(now),)).fetchall()
    return [Lapsed(r[0], [(s, p) for s, p in json.loads(r[1])], Decimal(r[2]), int(r[3]), r[4]) for r in rows]


def lapsed(tx: Any, now: datetime) -> bool:
    """Whether some flight's lease has lapsed (a cheap look before `expired`)."""
    return tx.execute(f"SELECT 1 FROM {FLIGHTS} WHERE expires_at < ? LIMIT 1", (stamp(now),)).fetchone() is not None


def take_expired(tx: Any, lapsed: Sequence[Lapsed], now: datetime) -> None:
    """Count each lapsed flight at its worst case (held -> spent, one request) and write its
    call's ledger row as ``unknown`` at that cost. The counters must be locked (`read`)."""
    for f in lapsed:
        if not drop_flight(tx, f.id):
            continue
        bump(tx, sorted(f.keys), delta(spent=f.amount, tokens=f.tokens, requests=1, unheld=f.amount,
                                       held_tokens=-f.tokens, held_requests=-1))
        if f.call is not None:
            from .flight import lapsed_record
            tx.record(lapsed_record(f.id, f.call, f.amount, now))


def flights(tx: Any) -> list[tuple[str, Decimal, int, float, str | None]]:
    """Every flight row: (id, held USD, held tokens, lease expiry in Unix seconds, call)."""
    return [(r[0], Decimal(r[1]), int(r[2]), float(r[3]), r[4]) for r in tx.execute(
        f"SELECT id, amount_usd, tokens, expires_at, call FROM {FLIGHTS} ORDER BY id").fetchall()]


def forget_unknown(tx: Any, flight_id: str) -> None:
    """Remove the ``unknown`` row a lapsed flight left: the row of its real outcome is written
    in the same transaction."""
    from ..ledger.rows import TABLE
    tx.execute(f"DELETE FROM {TABLE} WHERE id = ? AND status = 'unknown'", (flight_id,))


# ── alerts ───────────────────────────────────────────────────────────────────

def claim_alert(tx: Any, slot: Slot, threshold: str, now: datetime) -> bool:
    """True for exactly one caller per (slot, threshold), across threads, processes and hosts."""
    from ..ledger.rows import iso
    cur = tx.execute(f"INSERT INTO {ALERTS} (budget, scope, period, threshold, fired_at) "
                     "VALUES (?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", (*slot.key, threshold, iso(now)))
    return bool(cur.rowcount == 1)
