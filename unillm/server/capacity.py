"""How many requests one gateway process serves at once, and what the rest get.

`Capacity` is the gateway's admission queue, kept by its one ASGI middleware
(`unillm.server.limits.Limits`, the outermost of ours):

* at most ``max_concurrent_requests`` requests run in the app at once (a stream holds its
  place until its last byte is sent); the next ones wait in a FIFO queue, each handed the
  place of a request that finished;
* at most ``max_queued_requests`` wait, each at most ``queue_timeout`` seconds; beyond
  either, the request gets ``503`` with ``Retry-After`` and OpenAI's error shape (code
  ``gateway_saturated``), which the OpenAI SDKs retry after that delay, instead of a
  connection reset or a request that waits forever;
* ``/health`` is never queued: a busy gateway still answers its load balancer.

Once admitted, the caller's API key is looked up on the ledger store's threads when this
process has no fresh answer for it (`KeyStore.cached`), so no request waits on SQL run on
the event loop, and the answer rides in the request's scope (`VERIFIED`) to
`Gateway.authenticate`: the key is hashed once per request.

With a SQLite ledger, ``io`` (the store's `unillm.offload.Offload`) is told to run its
work inline while `idle`: one request in the process, none waiting, and none overlapping
another for `BUSY_HOLD` seconds, so no one waits on the loop meanwhile. That saves the
thread hop of the ledger row (~0.5 ms CPU per call, `bench/bench_gateway.py`) for a
gateway serving one caller at a time. "One request in the app" alone is not enough:
under 50 concurrent clients the gateway found itself with one request in ~1 in 4 times
(the others in the clients or on the wire, arriving during the write) and wrote those rows
on the loop, up to 129 ms each on a busy disk (`bench/bench_gateway_load.py`); so once two
requests overlap, every write goes to the store's threads until the gateway has served
alone for `BUSY_HOLD` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import Any

from .wire import HTTPError

#: paths that are served whatever the load
EXEMPT = frozenset({"/health"})
#: what a refused caller is told to wait, in seconds
RETRY_AFTER = 1.0
#: seconds after two requests last overlapped during which the gateway is not `idle`
BUSY_HOLD = 1.0


def saturated(active: int, queued: int, why: str) -> HTTPError:
    return HTTPError(503, f"the gateway is at capacity ({active} requests in flight, {queued} "
                     f"waiting): {why}; retry after {RETRY_AFTER:g} s ([server] "
                     "max_concurrent_requests, max_queued_requests, queue_timeout)",
                     type="server_error", code="gateway_saturated", retry_after=RETRY_AFTER)


class Capacity:
    """Bounded concurrency with a bounded, timed FIFO queue: `take` a place or `wait` for
    one, `release` it when the request is over."""

    def __init__(self, *, max_concurrent: int, max_queued: int, queue_timeout: float,
                 io: Any = None) -> None:
        self.max_concurrent, self.max_queued, self.queue_timeout = max_concurrent, max_queued, queue_timeout
        self.active = 0                               # requests in the app now
        self._waiting: deque[asyncio.Future[bool]] = deque()
        self._busy_at = -BUSY_HOLD - 1.0              # time.monotonic() two requests last overlapped
        if io is not None:
            io.inline = self.idle

    def idle(self) -> bool:
        """At most the asking request in the app, none queued, and none overlapping another
        for the last `BUSY_HOLD` seconds."""
        return (self.active <= 1 and not self._waiting
                and time.monotonic() - self._busy_at >= BUSY_HOLD)

    @property
    def queued(self) -> int:
        return len(self._waiting)

    def take(self) -> bool:
        """A place now, when one is free and nobody waits for one (False: `wait`)."""
        if self.active < self.max_concurrent and not self._waiting:
            self.active += 1
            if self.active > 1:
                self._busy_at = time.monotonic()
            return True
        return False

    async def wait(self) -> HTTPError | None:
        """Wait for a place (handed over by `release`); the refusal when there is none."""
        if len(self._waiting) >= self.max_queued:
            return saturated(self.active, len(self._waiting), "the queue is full")
        loop = asyncio.get_running_loop()
        turn: asyncio.Future[bool] = loop.create_future()
        self._waiting.append(turn)
        timer = loop.call_later(self.queue_timeout, self._expire, turn)
        try:
            admitted = await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled() and turn.result():
                self.release()  # handed a place just as it was cancelled: pass it on
            else:
                self._forget(turn)
            raise
        finally:
            timer.cancel()
        if not admitted:
            return saturated(self.active, len(self._waiting),
                             f"waited {self.queue_timeout:g} s for a place")
        if self.active > 1:
            self._busy_at = time.monotonic()
        return None

    def _expire(self, turn: asyncio.Future[bool]) -> None:
        if not turn.done():
            self._forget(turn)
            turn.set_result(False)

    def _forget(self, turn: asyncio.Future[bool]) -> None:
        try:
            self._waiting.remove(turn)
        except ValueError:
            pass

    def release(self) -> None:
        """A request left the app: its place goes to the oldest waiter, else it is freed."""
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(True)
                return
        self.active -= 1


__all__ = ["EXEMPT", "RETRY_AFTER", "Capacity", "saturated"]
