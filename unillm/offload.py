"""Blocking I/O off the event loop: a small, bounded pool of threads per store.

An async caller never runs a store's blocking work (an SQLite commit fsynced with
``synchronous=full``, a PostgreSQL round trip, a diskcache lookup) on its loop:
``await store.arun(fn, *args)`` runs ``fn`` on one of the store's threads, with the
caller's context variables, while the loop serves everything else. The sync path calls
the same ``fn`` directly, so sync and async share every step; only the shell differs.

Work that has started always runs to its end: cancelling the awaiting task (a deadline,
a client gone) waits for the thread first, then raises ``CancelledError``, so a ledger
row and its budget hold are never half settled, nor settled twice by whoever handles
the cancellation. The threads start on first use (a sync-only program runs none) and
`Offload.close` joins them.

A hop costs more than it saves when nothing else waits for the loop: ``inline``, when set,
is asked before each piece of work, and when it answers True the work runs on the
caller's thread (in a copy of its context, as on a worker). The gateway sets it for a
SQLite ledger to "this request is the only one in the process" (`server.capacity`):
measured with ``bench/bench_gateway.py``, the hop was ~0.5 ms CPU per call, the whole
of round two's extra gateway cost.
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

#: threads per store by default: SQLite serialises its writers on one connection anyway,
#: and a pool of 4 keeps a reader from waiting behind a commit
WORKERS = 4


class Offload:
    """Runs blocking callables on up to ``workers`` threads named ``name``."""

    def __init__(self, name: str, workers: int = WORKERS) -> None:
        self.name, self.workers = name, workers
        self._pool: ThreadPoolExecutor | None = None
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self.closed = False
        #: when it returns True, `run` runs the work on the caller's thread (see above)
        self.inline: Callable[[], bool] | None = None

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None or self._pid != os.getpid():  # a forked child has no threads
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix=self.name)
                self._pid, self.closed = os.getpid(), False
            return self._pool

    async def run(self, fn: Callable[..., T], *args: Any, off_loop: bool = False) -> T:
        """``fn(*args)`` on a worker thread (inline when ``inline`` says so and not ``off_loop``);
        its result or its exception."""
        inline = self.inline
        if not off_loop and inline is not None and inline():
            return contextvars.copy_context().run(fn, *args)
        import asyncio  # imported by whoever runs a loop already
        loop = asyncio.get_running_loop()
        hop = _Hop(loop)
        work = self._executor().submit(contextvars.copy_context().run, fn, *args)
        work.add_done_callback(hop.done)
        cancelled = False
        while hop.waiter is not None:
            try:
                await hop.waiter
            except asyncio.CancelledError:  # the work runs to its end: wait for it, then re-raise
                cancelled = True
                if hop.waiter is not None and hop.waiter.cancelled():
                    hop.waiter = loop.create_future()
        if cancelled:
            raise asyncio.CancelledError
        return work.result()

    def close(self) -> None:
        """Wait for work in progress and stop the threads; a later `run` starts them again."""
        with self._lock:
            pool, self._pool = self._pool, None
            self.closed = True
        if pool is not None and self._pid == os.getpid():
            pool.shutdown(wait=True)

    @property
    def threads(self) -> int:
        """How many worker threads are running now."""
        pool = self._pool
        return 0 if pool is None else len(pool._threads)

    @property
    def queued(self) -> int:
        """How many pieces of work wait for a free thread."""
        pool = self._pool
        return 0 if pool is None else pool._work_queue.qsize()

    def __repr__(self) -> str:
        return f"Offload({self.name!r}, workers={self.workers})"


class _Hop:
    """Wakes the task awaiting one piece of work: the worker thread schedules one callback on
    the loop, which resolves the future the task awaits (`asyncio.wrap_future` plus
    `asyncio.wait` took three steps of the loop per hop; this takes one)."""

    __slots__ = ("loop", "waiter")

    def __init__(self, loop: Any) -> None:
        self.loop = loop
        self.waiter: Any = loop.create_future()

    def done(self, _work: Any) -> None:  # on the worker thread
        try:
            self.loop.call_soon_threadsafe(self._wake)
        except RuntimeError:  # the loop was closed meanwhile: nobody is waiting any more
            pass

    def _wake(self) -> None:  # on the loop
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


class Offloaded:
    """``await x.arun(fn, *args)`` for a store holding its `Offload` as ``io``."""

    io: Offload

    async def arun(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` on one of this store's threads (see `Offload.run`)."""
        return await self.io.run(fn, *args)
