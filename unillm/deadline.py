"""`within(aw, seconds)`: ``asyncio.timeout`` semantics, without a timer per use (3.11+).

``asyncio.timeout`` pushes a `TimerHandle` onto the loop's heap each time. An await that
ends long before its deadline (every call under ``call_deadline`` = 1800 s, every request
body under ``body_timeout``) leaves the handle there, cancelled: asyncio drops cancelled
handles only when they reach the top of the heap or outnumber the live ones, so the heap
stays full of dead handles and every timer operation of the loop gets slower (the gateway
measured twice the heap compares per request, `bench/bench_gateway.py`).

Here each event loop has one `Deadlines`: a waiting task is a dict entry, and one timer is
armed for the earliest deadline, re-armed only when an earlier one arrives. It fires on
time; the tasks past their deadline are cancelled and their `within` raises `TimeoutError`,
with the same uncancel bookkeeping as ``asyncio.timeout``, so a cancellation that is not
the deadline's stays a cancellation, and deadlines nest.
"""

from __future__ import annotations

import asyncio
import math
import weakref
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["Deadlines", "within"]


class Deadlines:
    """The deadlines of the tasks waiting in `within` on one event loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._waiting: dict[object, tuple[float, asyncio.Task[Any]]] = {}
        self._late: set[object] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._at = math.inf

    async def within(self, aw: Awaitable[T], seconds: float) -> T:
        """``await aw``; past ``seconds`` the task is cancelled there and this raises
        `TimeoutError` (a caller's own cancellation still raises `asyncio.CancelledError`)."""
        task = asyncio.current_task()
        assert task is not None
        token, deadline, cancelling = object(), self.loop.time() + seconds, task.cancelling()
        self._waiting[token] = (deadline, task)
        if deadline < self._at:
            self._arm(deadline)
        try:
            result = await aw
        except BaseException as exc:
            del self._waiting[token]
            if token in self._late:
                self._late.discard(token)
                if task.uncancel() <= cancelling and isinstance(exc, asyncio.CancelledError):
                    raise TimeoutError from exc
            raise
        del self._waiting[token]
        if token in self._late:  # cut as it finished: the cancellation was ours, take it back
            self._late.discard(token)
            task.uncancel()
        return result

    def _arm(self, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._at, self._timer = at, self.loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer, self._at = None, math.inf
        now, upcoming = self.loop.time(), math.inf
        for token, (deadline, task) in self._waiting.items():
            if token in self._late:
                continue
            if deadline <= now:
                self._late.add(token)
                task.cancel()  # suspended inside its `within`: it leaves `_waiting` on resuming
            else:
                upcoming = min(upcoming, deadline)
        if upcoming < math.inf:
            self._arm(upcoming)


_LOOPS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Deadlines] = weakref.WeakKeyDictionary()


def within(aw: Awaitable[T], seconds: float) -> Awaitable[T]:
    """``await within(aw, seconds)``: `Deadlines.within` on the running loop's `Deadlines`."""
    loop = asyncio.get_running_loop()
    try:
        deadlines = _LOOPS.get(loop)
        if deadlines is None:
            deadlines = _LOOPS[loop] = Deadlines(loop)
    except TypeError:  # a loop class that takes no weak reference: asyncio's own timeout
        return _timeout(aw, seconds)
    return deadlines.within(aw, seconds)


async def _timeout(aw: Awaitable[T], seconds: float) -> T:
    async with asyncio.timeout(seconds):
        return await aw
