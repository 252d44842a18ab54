"""Cache-hit rows written by group commit: the caller never waits for their INSERT.

A cache hit costs nothing, and its row only counts what an answer already paid for saved
again; losing one loses a count, never money. So `Ledger.add` hands a ``cache_hit`` row to
its store's `HitWriter` and returns at once; the writer's thread commits whatever is
waiting in one transaction, `INTERVAL` seconds after the first row of a batch arrived (or
as soon as `MAX_ROWS` wait). Every other row (an answer that may have cost money, an
error, a denial) is committed before the call returns, as it always was.

What is guaranteed about hit rows:

* **reads in the same process see them.** Every read of the store (``Ledger.records``,
  ``summary``, ``export``, ``whatif``; the store's ``records``, ``ranked``, ``by_ids``,
  ``tail``, ``last_cursor``; the gateway's analytics and dashboard, which read through
  them) first commits what is waiting, so a hit is in the ledger the moment ``chat()``
  returns, for anyone reading through the same `Client`; except a read inside a
  ``store.transaction()`` the reader has open, which sees the hits committed before it (a
  hit committed into that transaction would be lost if it rolled back);
* **closing writes them.** ``Client.close()``/``aclose()`` (and the store's ``close``)
  commit what is waiting before they return; so does a normal interpreter exit
  (`atexit`), and a `Ledger` (a Client's ``client.ledger``) garbage-collected unclosed
  has its writer commit and stop (`weakref.finalize`);
* **other processes** reading the same database see a hit within `INTERVAL` seconds;
* **a crash loses at most the hits of the last interval**: SIGKILL, ``os._exit``, a power
  cut lose the hit rows not yet committed (those of the last `INTERVAL` seconds at most)
  and nothing else; a paid row is never held here;
* **a batch that cannot be committed** (disk full, the database locked past its timeout)
  is kept and tried again at the next interval, with one `HitRowsWarning`; past
  `MAX_PENDING` waiting rows the oldest are dropped (the warning says how many).

Rows are written in the order they were added; a hit's ``seq`` (the ``tail`` cursor) is
the order of its commit, so it may come after a paid row that started later.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import threading
import warnings
import weakref
from datetime import timedelta
from decimal import Decimal
from typing import Any

from . import money
from .reads import INSERT_NEW
from .records import CallRecord, _fine, new_id
from .rows import to_row

__all__ = ["INTERVAL", "MAX_PENDING", "MAX_ROWS", "HitRowsWarning", "HitWriter", "hit_record", "later",
           "new_id"]

#: seconds a hit row may wait before it is committed (at most this much is lost in a crash)
INTERVAL = 1.0
#: a batch this big is committed at once, without waiting for the interval
MAX_ROWS = 500
#: rows kept while the database refuses them; beyond this the oldest are dropped
MAX_PENDING = 100_000
#: the writer's thread: a ledger thread (the store's pool threads are ``unillm-ledger_N``)
THREAD_NAME = "unillm-ledger_hits"

_live: weakref.WeakSet[HitWriter] = weakref.WeakSet()
_opening = threading.Lock()


def hit_record(call: Any, resp: Any, saved: Decimal | None, rec_id: str | None = None) -> CallRecord:
    """The ``cache_hit`` row of ``call`` served ``resp`` (saving ``saved``): field for field
    what ``record_for(call, "cache_hit", cost=resp.cost, saved=saved, saved_reason="cache",
    response=resp, model=resp.model)`` builds (a test holds the two equal; with
    ``log_content`` the Client uses record_for), in a third of its time. A hit is the hot path of a cached workload, and every
    value here is already valid (a `Call`'s and a `ChatResponse`'s), so the frozen dataclass's
    per-field ``__init__`` and its ``__post_init__`` checks are skipped: the slots are set
    directly over an empty record's defaults (a field added to `CallRecord` gets its default)."""
    if call.call_id is None:
        call.call_id = new_id()
    latency = call.elapsed_ms()
    started = call.at + timedelta(seconds=call.attempt_t0 - call.t0) if call.attempt > 1 else call.at
    cost, ref = resp.cost, call.ref
    if saved is None:
        saved = _ZERO
    elif type(saved) is not Decimal or not _fine(saved):
        saved = money.normalize(saved)
    dropped = call.request.dropped
    values = dict(_DEFAULTS)
    for name, factory in _FACTORIES:
        values[name] = factory()
    values.update(
        provider=ref.provider, model=resp.model, status="cache_hit", id=rec_id or new_id(),
        started_at=started, ended_at=started + timedelta(milliseconds=latency), latency_ms=latency,
        ttft_ms=call.ttft_ms, requested_model=call.requested_model, rule=call.rule,
        shadow_rule=call.shadow_rule, fallback_from=call.fallback_from,
        input_usd=cost.input_usd, cache_read_usd=cost.cache_read_usd, cache_write_usd=cost.cache_write_usd,
        output_usd=cost.output_usd, other_usd=cost.other_usd, total_usd=cost.total_usd,
        saved_usd=saved, saved_reason="cache", price_version=cost.price_version, fingerprint=call.cache_key,
        tags={str(k): str(v) for k, v in call.tags.items()}, section=call.section, stream=call.stream,
        cache_status=call.cache_status, dropped_params=tuple(dropped),
        attempt=call.attempt or 1, sent_model=ref.model, deployment=call.deployment,
        call_id=call.call_id, kind=call.kind, inputs=call.inputs)
    rec: CallRecord = _new(CallRecord)
    for name, value in values.items():
        _set(rec, name, value)
    return rec


_ZERO = Decimal(0)
#: an empty record's plain defaults, in field order; the fields with a factory (a fresh dict each)
_DEFAULTS: dict[str, Any] = {f.name: f.default for f in dataclasses.fields(CallRecord)}
_FACTORIES = tuple((f.name, f.default_factory) for f in dataclasses.fields(CallRecord)
                   if f.default_factory is not dataclasses.MISSING and f.name not in ("id", "started_at", "tags"))
_new, _set = object.__new__, object.__setattr__


class HitRowsWarning(UserWarning):
    """Cache-hit rows could not be committed yet (or, past `MAX_PENDING`, were dropped)."""


def later(store: Any, rec: CallRecord, owner: object | None = None) -> None:
    """Record ``rec`` (a money-free row) through ``store``'s writer, opened on first use.
    When ``owner`` (the `Ledger`) is garbage-collected, the writer commits and stops."""
    writer = store.hits
    if writer is None or writer.stopping:
        with _opening:
            writer = store.hits
            if writer is None or writer.stopping:
                writer = store.hits = HitWriter(store)
                if owner is not None:
                    weakref.finalize(owner, writer.stop)
    writer.add(rec)


class HitWriter:
    """Commits the rows `add` is given in batches, one transaction each, on its own thread.

    `flush` commits everything added before it was called (on the caller's thread, when
    there is anything); `close` commits the rest and stops the thread; `stop` asks the
    thread to commit the rest and stop, without waiting."""

    def __init__(self, store: Any, *, interval: float = INTERVAL, max_rows: int = MAX_ROWS) -> None:
        self.store = store
        self.interval, self.max_rows = interval, max_rows
        self.stopping = False
        self._rows: list[CallRecord] = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)  # guards _rows, _thread, stopping
        self._commit = threading.Lock()  # held while a batch commits: batches go in order
        self._thread: threading.Thread | None = None
        self._warned = False
        _live.add(self)

    # ── the caller's side ────────────────────────────────────────────────────

    def add(self, rec: CallRecord) -> None:
        """Queue ``rec``; it is committed within `interval` seconds (or by `flush`)."""
        with self._lock:  # the condition's own lock, entered without Condition.__enter__'s Python frame
            if not self.stopping:
                self._rows.append(rec)
                waiting = len(self._rows)
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name=THREAD_NAME, daemon=True)
                    self._thread.start()
                elif waiting == 1 or waiting == self.max_rows:  # the two waits the thread may be in
                    self._cond.notify()
                return
        self.store.record(rec)  # stopped meanwhile: nothing would commit it later

    def flush(self) -> None:
        """Commit every row added before this call; returns once they are committed (or,
        when the database refuses them, kept for the next try with a warning)."""
        if not self._rows and not self._commit.locked():
            return  # nothing waiting, nothing being committed: a read costs no lock
        self._commit_waiting()

    def stop(self) -> None:
        """Ask the thread to commit what is waiting and end; does not wait for it."""
        with self._cond:
            self.stopping = True
            self._cond.notify()

    def close(self) -> None:
        """Commit what is waiting and stop the thread (idempotent)."""
        self.stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self.flush()  # rows the thread never got to (it was not running: a fork)
        _live.discard(self)

    @property
    def waiting(self) -> int:
        """How many rows are waiting to be committed."""
        return len(self._rows)

    # ── the thread ───────────────────────────────────────────────────────────

    def _run(self) -> None:
        while self._next_batch():
            self._commit_waiting()
        self.flush()

    def _next_batch(self) -> bool:
        """Wait for a row, then for the interval (or a full batch); False once stopping."""
        with self._cond:
            while not self._rows and not self.stopping:
                self._cond.wait()
            if not self.stopping:
                self._cond.wait_for(lambda: self.stopping or len(self._rows) >= self.max_rows,
                                    self.interval)
            return not self.stopping

    def _commit_waiting(self) -> None:
        """One transaction for every row waiting now. The store's transaction is entered
        before the commit lock, as every other writer enters it: no lock-order deadlock."""
        batch: list[CallRecord] = []
        try:
            with self.store.transaction() as tx, self._commit:
                with self._cond:
                    batch, self._rows = self._rows, []
                for rec in batch:  # a row already stored (a retried batch) is skipped, not an error
                    tx.execute(INSERT_NEW, to_row(rec))
        except Exception as exc:  # noqa: BLE001 - a hit row never breaks a call: kept, retried, warned
            self._keep(batch, exc)

    def _keep(self, batch: list[CallRecord], exc: Exception) -> None:
        with self._cond:
            self._rows[:0] = batch
            dropped = max(len(self._rows) - MAX_PENDING, 0)
            del self._rows[:dropped]
        if dropped or not self._warned:
            self._warned = True
            lost = f"; {dropped} of the oldest were dropped" if dropped else ""
            warnings.warn(f"{len(batch)} cache-hit row(s) could not be written to the ledger yet "
                          f"({type(exc).__name__}: {exc}); kept to try again{lost}", HitRowsWarning,
                          stacklevel=2)

    def _forked(self) -> None:
        """In a forked child: the parent commits the rows it had; start afresh."""
        self._rows = []
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._commit = threading.Lock()
        self._thread = None

    def __repr__(self) -> str:
        return f"HitWriter({self.store!r}, waiting={self.waiting})"


def _close_all() -> None:
    """At interpreter exit: commit every writer's waiting rows."""
    for writer in list(_live):
        writer.close()


def _after_fork() -> None:
    for writer in list(_live):
        writer._forked()


atexit.register(_close_all)
os.register_at_fork(after_in_child=_after_fork)
