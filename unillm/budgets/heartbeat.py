"""Holds that live as long as their call: one daemon thread per `Budgets` renews leases.

Why a thread and not renewal on each chunk: a non-streamed call blocks inside the
vendor's SDK for as long as the vendor takes, and a stream may sit unread in the
caller's hands; neither yields control to unillm, so only a thread can renew them.
One thread serves every live hold of the process, wakes every ``lease / 3`` (two
renewals can fail before a hold lapses) and renews them all in one transaction. When
it wakes to find no hold live, it waits a second more and exits; the next hold starts
it again, so a process without calls in flight soon runs no thread. It never renews a
hold past its call's deadline; a process that dies stops renewing, and the hold expires
and is counted at its worst case (`store.lock`).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

log = logging.getLogger("unillm.budgets")

#: seconds the thread waits, once no hold is live, before it exits (calls in quick
#: succession then share one thread instead of starting one each)
IDLE_LINGER = 1.0

#: forks of this process so far, counted in the child (a `Heartbeat` made before a fork is
#: its parent's: `watch` starts over), so a hold registers without a ``getpid`` system call
_forks = [0]
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=lambda: _forks.__setitem__(0, _forks[0] + 1))


class Heartbeat:
    def __init__(self, renew: Callable[[list[Any], datetime], None], clock: Callable[[], datetime]) -> None:
        self._renew, self._clock = renew, clock
        self._live: dict[str, Any] = {}          # hold id -> Hold
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()          # the thread's sleep (set: wake it now)
        self._forks = _forks[0]

    def watch(self, hold: Any) -> None:
        if self._forks != _forks[0]:  # a forked child: its parent's calls are not its own to renew
            self._forks, self._live, self._thread = _forks[0], {}, None
            self._lock, self._wake = threading.Lock(), threading.Event()
        with self._lock:
            self._live[hold.id] = hold
            if self._thread is None:  # (the thread clears it as it ends: `_run`)
                self._thread = threading.Thread(target=self._run, name="unillm-budget-heartbeat",
                                                daemon=True)
                self._thread.start()

    def forget(self, hold_id: str) -> None:
        with self._lock:
            self._live.pop(hold_id, None)

    def stop(self) -> None:
        """Stop renewing and join the thread (holds of calls still in flight then lapse and
        are counted at their worst case, as a process that died); a later hold starts it again."""
        with self._lock:
            self._live = {}
            thread, self._thread = self._thread, None
        if thread is not None:
            self._wake.set()
            thread.join()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def live(self) -> int:
        return len(self._live)

    def beat(self, now: datetime | None = None) -> int:
        """Renew every live hold whose call is within its deadline; how many were renewed.
        (The thread calls this; tests with an injected clock call it directly.)"""
        now = now or self._clock()
        with self._lock:
            due = [h for h in self._live.values() if h.deadline is None or now < h.deadline]
            for h in self._live.values():
                if h.deadline is not None and now >= h.deadline:
                    log.warning("budget hold %s outlived its call's deadline; it is no longer renewed "
                                "and will be counted at its worst case", h.id)
            self._live = {h.id: h for h in due}
        if due:
            self._renew(due, now)
        return len(due)

    def _run(self) -> None:
        try:
            self._loop()
        finally:  # (every way out of the loop but an unforeseen error has done this already)
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None

    def _loop(self) -> None:
        idle = False
        while True:
            with self._lock:
                if self._thread is not threading.current_thread():  # stopped (`stop`)
                    return
                if not self._live and idle:
                    self._thread = None
                    return
                idle = not self._live
                interval = IDLE_LINGER if idle else min(h.lease for h in self._live.values()) / 3
                self._wake.clear()
            self._wake.wait(interval)
            if idle:
                continue
            try:
                self.beat()
            except Exception:  # a busy or lost database: the next beat tries again
                log.warning("could not renew budget holds", exc_info=True)
