"""Per-key RPM/TPM limits and per-key concurrency, shared by every gateway process and host.

Where the counts live (``[server] ratelimit``):

* unset (the default): the ledger's database — one SQLite file shared by the workers of
  one host, or PostgreSQL shared by every host (`ratelimit_shared.SQLRateLimiter`);
* ``"redis://HOST:PORT/DB"``: Redis (`ratelimit_shared.RedisRateLimiter`);
* ``"memory"``: this process only (`RateLimiter`): with ``--workers N`` each worker
  admits up to the limit, so a key gets N times its limit. Also what a gateway with
  ``ledger = "off"`` uses.

A request is admitted while fewer than ``rpm`` requests and fewer than ``tpm`` tokens
were used in the sliding window of the last 60 seconds; tokens are counted when a call
finishes (its real usage), so one large call may overshoot a TPM limit once, and the
next waits. ``[server] max_concurrent_per_key`` caps the requests one key has in flight:
each holds a lease from admission until its response (stream included) has been sent;
a shared lease is renewed while the request runs, so one left by a killed worker frees
itself within `LEASE_SECONDS`. Clocks are injected (tests move them, never sleep).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: how long a shared in-flight lease lives unless renewed (it is renewed every third of it)
LEASE_SECONDS = 60.0

#: the leases taken while serving the current request: the request's middleware
#: (`unillm.server.limits.Limits`) sets a list and releases what is in it (`Limiter.arelease`)
#: when its response, a stream included, is over, however it ends
HELD: contextvars.ContextVar[list[tuple[Any, str]] | None] = contextvars.ContextVar(
    "unillm_leases", default=None)


class Limited(Exception):  # noqa: N818 - a refusal carried to the handler, not a fault
    """Over a limit: which one, and how long until a request would be admitted."""

    def __init__(self, limit: str, value: int, retry_after: float) -> None:
        retry_after = max(retry_after, 0.0)
        super().__init__(f"rate limit reached: {value} {limit}; retry after {retry_after:.1f}s")
        self.limit, self.value, self.retry_after = limit, value, retry_after


def token_wait(events: list[tuple[float, int]], total: int, tpm: int, now: float,
               window: float) -> float:
    """Seconds until the tokens in the window (``events`` oldest first) drop below ``tpm``."""
    left = total
    for at, n in events:
        left -= n
        if left < tpm:
            return at + window - now
    return window


class Limiter:
    """What every limiter does; the async entry points run blocking backends in a thread."""

    #: True when admit/acquire do I/O (then they run off the event loop)
    blocking = False

    def admit(self, key_id: str, rpm: int | None, tpm: int | None) -> None:
        raise NotImplementedError

    def add_tokens(self, key_id: str, tokens: int) -> None:
        raise NotImplementedError

    def acquire(self, key_id: str, limit: int) -> str:
        """Take one of ``limit`` in-flight slots of the key (a lease id), or raise `Limited`."""
        raise NotImplementedError

    def release(self, key_id: str, lease: str) -> None:
        raise NotImplementedError

    def flush(self) -> None:
        """Wait for counts handed to a background writer (none here)."""

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(fn, *args) if self.blocking else fn(*args)

    async def aadmit(self, key_id: str, rpm: int | None, tpm: int | None,
                     concurrent: int | None = None) -> None:
        """A concurrency slot (inside a request collecting its leases in `HELD`), then the rate
        limits; a refusal by the latter leaves the slot to be released with the request."""
        held = HELD.get()
        if concurrent and held is not None:
            held.append((key_id, await self._run(self.acquire, key_id, concurrent)))
        if rpm or tpm:
            await self._run(self.admit, key_id, rpm, tpm)

    async def arelease(self, leases: list[tuple[str, str]]) -> None:
        for key_id, lease in leases:
            try:
                await self._run(self.release, key_id, lease)
            except asyncio.CancelledError:  # the client hung up: give the slot back anyway
                self.release(key_id, lease)
                raise


@dataclass
class _Window:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0
    in_flight: int = 0


class RateLimiter(Limiter):
    """In-process sliding-window request and token counts, and in-flight counts, per key id."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, window: float = 60.0) -> None:
        self.clock = clock
        self.window = window
        self._keys: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def _prune(self, w: _Window, now: float) -> None:
        edge = now - self.window
        while w.requests and w.requests[0] <= edge:
            w.requests.popleft()
        while w.tokens and w.tokens[0][0] <= edge:
            w.token_sum -= w.tokens.popleft()[1]

    def admit(self, key_id: str, rpm: int | None, tpm: int | None) -> None:
        """Count one request, or raise `Limited` (nothing counted) when over a limit."""
        if not rpm and not tpm:
            return
        now = self.clock()
        with self._lock:
            w = self._keys.setdefault(key_id, _Window())
            self._prune(w, now)
            if rpm and len(w.requests) >= rpm:
                raise Limited("requests per minute", rpm, w.requests[len(w.requests) - rpm] + self.window - now)
            if tpm and w.token_sum >= tpm:
                raise Limited("tokens per minute", tpm, token_wait(list(w.tokens), w.token_sum, tpm, now,
                                                                   self.window))
            w.requests.append(now)

    def add_tokens(self, key_id: str, tokens: int) -> None:
        """Count a finished call's tokens against its key."""
        if tokens <= 0:
            return
        now = self.clock()
        with self._lock:
            w = self._keys.get(key_id)
            if w is None:
                return  # the key has no limits
            w.tokens.append((now, tokens))
            w.token_sum += tokens

    def acquire(self, key_id: str, limit: int) -> str:
        with self._lock:
            w = self._keys.setdefault(key_id, _Window())
            if w.in_flight >= limit:
                raise Limited("concurrent requests", limit, 1.0)
            w.in_flight += 1
        return key_id

    def release(self, key_id: str, lease: str) -> None:
        with self._lock:
            w = self._keys.get(key_id)
            if w is not None and w.in_flight > 0:
                w.in_flight -= 1

    def usage(self, key_id: str) -> tuple[int, int]:
        """(requests, tokens) in the current window."""
        now = self.clock()
        with self._lock:
            w = self._keys.get(key_id)
            if w is None:
                return 0, 0
            self._prune(w, now)
            return len(w.requests), w.token_sum
