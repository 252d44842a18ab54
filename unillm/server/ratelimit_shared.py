"""Rate limits and in-flight leases every gateway worker and host sees: in the ledger's
database (`SQLRateLimiter`) or in Redis (`RedisRateLimiter`). See `ratelimit` for the rules.

Both count with the wall clock (``time.time``: the one clock processes and hosts share)
and fail closed: when the shared store cannot be reached a request is refused with
`LimiterUnavailable` (429, retry after a second) rather than let through unlimited.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from .. import errors
from .ratelimit import LEASE_SECONDS, Limited, Limiter, token_wait

KEYS = "unillm_rate_keys"
EVENTS = "unillm_rate_events"
LEASES = "unillm_rate_leases"


class LimiterUnavailable(Limited):
    """The shared limiter's store cannot be reached: refuse (fail closed), retry shortly."""

    def __init__(self, detail: str) -> None:
        super().__init__("(the rate limiter's store is unavailable)", 0, 1.0)
        self.args = (f"rate limits cannot be checked right now ({detail}); retry in a second",)


class _Shared(Limiter):
    """Lease renewal and background token counting, common to both shared limiters."""

    blocking = True

    def __init__(self, clock: Callable[[], float], window: float, lease: float) -> None:
        self.clock, self.window, self.lease = clock, window, lease
        self._live: dict[str, str] = {}           # lease id -> key id, renewed while live
        self._live_lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._writes: ThreadPoolExecutor | None = None

    def add_tokens(self, key_id: str, tokens: int) -> None:
        """Count a finished call's tokens, off the caller's thread (it may be the event loop)."""
        if tokens <= 0:
            return
        now = self.clock()
        if self._writes is None:
            self._writes = ThreadPoolExecutor(1, thread_name_prefix="unillm-ratelimit")
        self._writes.submit(self._quietly, self._add_tokens, key_id, tokens, now)

    def flush(self) -> None:
        """Wait for token counts handed to the background writer (tests, shutdown)."""
        if self._writes is not None:
            self._writes.submit(lambda: None).result()

    @staticmethod
    def _quietly(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001, S110 - a lost token count must not take a worker down
            pass

    def _add_tokens(self, key_id: str, tokens: int, at: float) -> None:
        raise NotImplementedError

    def acquire(self, key_id: str, limit: int) -> str:
        lease = uuid.uuid4().hex
        self._acquire(key_id, limit, lease, self.clock())
        with self._live_lock:
            self._live[lease] = key_id
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(target=self._renew_forever, daemon=True,
                                                 name="unillm-lease-renewer")
                self._renewer.start()
        return lease

    def release(self, key_id: str, lease: str) -> None:
        with self._live_lock:
            self._live.pop(lease, None)
        self._release(key_id, lease)

    def _renew_forever(self) -> None:
        while True:
            time.sleep(self.lease / 3)
            with self._live_lock:
                live = dict(self._live)
            if live:
                self._quietly(self._renew, live, self.clock() + self.lease)

    def _acquire(self, key_id: str, limit: int, lease: str, now: float) -> None:
        raise NotImplementedError

    def _release(self, key_id: str, lease: str) -> None:
        raise NotImplementedError

    def _renew(self, live: dict[str, str], expires: float) -> None:
        raise NotImplementedError


class SQLRateLimiter(_Shared):
    """Counts in the ledger's database (the tables of migration ``0008_ratelimits``).

    Each admission is one transaction that first locks the key's row (SQLite's
    ``BEGIN IMMEDIATE`` serialises writers; PostgreSQL adds ``FOR UPDATE``), so
    concurrent workers cannot both take the last request of a window.
    """

    def __init__(self, store: Any, *, clock: Callable[[], float] = time.time, window: float = 60.0,
                 lease: float = LEASE_SECONDS) -> None:
        super().__init__(clock, window, lease)
        self.store = store

    @contextmanager
    def _locked(self, key_id: str) -> Any:
        try:
            with self.store.transaction() as tx:
                tx.execute(f"INSERT INTO {KEYS} (key_id) VALUES (?) ON CONFLICT DO NOTHING", (key_id,))
                tx.execute(f"SELECT key_id FROM {KEYS} WHERE key_id = ?{tx.dialect.for_update}", (key_id,))
                yield tx
        except (errors.UnillmError, sqlite3.Error) as exc:
            raise LimiterUnavailable(type(exc).__name__) from None

    def admit(self, key_id: str, rpm: int | None, tpm: int | None) -> None:
        if not rpm and not tpm:
            return
        now = self.clock()
        with self._locked(key_id) as tx:
            tx.execute(f"DELETE FROM {EVENTS} WHERE key_id = ? AND at <= ?", (key_id, now - self.window))
            if rpm:
                (n,) = tx.execute(f"SELECT COUNT(*) FROM {EVENTS} WHERE key_id = ? AND kind = 'r'",
                                  (key_id,)).fetchone()
                if n >= rpm:
                    (at,) = tx.execute(f"SELECT at FROM {EVENTS} WHERE key_id = ? AND kind = 'r' "
                                       f"ORDER BY at LIMIT 1 OFFSET ?", (key_id, int(n) - rpm)).fetchone()
                    raise Limited("requests per minute", rpm, float(at) + self.window - now)
            if tpm:
                rows = tx.execute(f"SELECT at, amount FROM {EVENTS} WHERE key_id = ? AND kind = 't' "
                                  "ORDER BY at", (key_id,)).fetchall()
                events = [(float(a), int(n)) for a, n in rows]
                total = sum(n for _, n in events)
                if total >= tpm:
                    raise Limited("tokens per minute", tpm, token_wait(events, total, tpm, now, self.window))
            tx.execute(f"INSERT INTO {EVENTS} (key_id, kind, at, amount) VALUES (?, 'r', ?, 0)", (key_id, now))

    def _add_tokens(self, key_id: str, tokens: int, at: float) -> None:
        with self.store.transaction() as tx:
            tx.execute(f"INSERT INTO {EVENTS} (key_id, kind, at, amount) VALUES (?, 't', ?, ?)",
                       (key_id, at, tokens))

    def _acquire(self, key_id: str, limit: int, lease: str, now: float) -> None:
        with self._locked(key_id) as tx:
            tx.execute(f"DELETE FROM {LEASES} WHERE key_id = ? AND expires_at < ?", (key_id, now))
            (n,) = tx.execute(f"SELECT COUNT(*) FROM {LEASES} WHERE key_id = ?", (key_id,)).fetchone()
            if n >= limit:
                raise Limited("concurrent requests", limit, 1.0)
            tx.execute(f"INSERT INTO {LEASES} (id, key_id, expires_at) VALUES (?, ?, ?)",
                       (lease, key_id, now + self.lease))

    def _release(self, key_id: str, lease: str) -> None:
        try:
            with self.store.transaction() as tx:
                tx.execute(f"DELETE FROM {LEASES} WHERE id = ?", (lease,))
        except (errors.UnillmError, sqlite3.Error):
            pass  # the lease lapses by itself within `lease` seconds

    def _renew(self, live: dict[str, str], expires: float) -> None:
        with self.store.transaction() as tx:
            for lease in live:
                tx.execute(f"UPDATE {LEASES} SET expires_at = ? WHERE id = ?", (expires, lease))


#: KEYS: requests, tokens; ARGV: now, window, rpm, tpm, member. {0} admitted, or {1|2, wait}
_ADMIT = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local rpm, tpm = tonumber(ARGV[3]), tonumber(ARGV[4])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if rpm > 0 then
  local n = redis.call('ZCARD', KEYS[1])
  if n >= rpm then
    local at = redis.call('ZRANGE', KEYS[1], n - rpm, n - rpm, 'WITHSCORES')
    return {1, tostring(tonumber(at[2]) + window - now)}
  end
end
if tpm > 0 then
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local total = 0
  for i = 1, #entries, 2 do total = total + tonumber(string.match(entries[i], ':(%d+)$')) end
  if total >= tpm then
    local left = total
    for i = 1, #entries, 2 do
      left = left - tonumber(string.match(entries[i], ':(%d+)$'))
      if left < tpm then return {2, tostring(tonumber(entries[i + 1]) + window - now)} end
    end
    return {2, tostring(window)}
  end
end
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000) + 1000)
return {0, '0'}
"""

#: KEYS: leases; ARGV: now, limit, lease id, expires. 1 taken, 0 full
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
redis.call('PEXPIREAT', KEYS[1], math.ceil(tonumber(ARGV[4]) * 1000) + 1000)
return 1
"""


class RedisRateLimiter(_Shared):
    """Counts in Redis: sorted sets per key, each check-and-count one Lua script (atomic)."""

    def __init__(self, url: str, *, clock: Callable[[], float] = time.time, window: float = 60.0,
                 lease: float = LEASE_SECONDS, prefix: str = "unillm:rl:", timeout: float = 1.0) -> None:
        super().__init__(clock, window, lease)
        try:
            import redis
        except ImportError as exc:
            raise errors.MissingDependencyError("redis", "redis") from exc
        self._errors = (redis.RedisError, OSError)
        try:
            self._r = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        except ValueError as exc:
            raise errors.ConfigError(f"bad Redis URL: {exc}", key="server.ratelimit") from None
        self.prefix = prefix
        self._admit = self._r.register_script(_ADMIT)
        self._take = self._r.register_script(_ACQUIRE)

    def _key(self, key_id: str, kind: str) -> str:
        return f"{self.prefix}{key_id}:{kind}"

    @contextmanager
    def _reachable(self) -> Any:
        try:
            yield
        except self._errors as exc:
            raise LimiterUnavailable(type(exc).__name__) from None

    def admit(self, key_id: str, rpm: int | None, tpm: int | None) -> None:
        if not rpm and not tpm:
            return
        now = self.clock()
        with self._reachable():
            verdict, wait = self._admit(keys=[self._key(key_id, "r"), self._key(key_id, "t")],
                                        args=[repr(now), repr(self.window), rpm or 0, tpm or 0,
                                              uuid.uuid4().hex])
        if int(verdict) == 1:
            raise Limited("requests per minute", int(rpm or 0), float(wait))
        if int(verdict) == 2:
            raise Limited("tokens per minute", int(tpm or 0), float(wait))

    def _add_tokens(self, key_id: str, tokens: int, at: float) -> None:
        key = self._key(key_id, "t")
        pipe = self._r.pipeline()
        pipe.zadd(key, {f"{uuid.uuid4().hex}:{int(tokens)}": at})
        pipe.pexpire(key, int(self.window * 1000) + 1000)
        pipe.execute()

    def _acquire(self, key_id: str, limit: int, lease: str, now: float) -> None:
        with self._reachable():
            taken = self._take(keys=[self._key(key_id, "c")],
                               args=[repr(now), limit, lease, repr(now + self.lease)])
        if not int(taken):
            raise Limited("concurrent requests", limit, 1.0)

    def _release(self, key_id: str, lease: str) -> None:
        try:
            self._r.zrem(self._key(key_id, "c"), lease)
        except self._errors:
            pass  # the lease lapses by itself

    def _renew(self, live: dict[str, str], expires: float) -> None:
        pipe = self._r.pipeline()
        for lease, key_id in live.items():
            pipe.zadd(self._key(key_id, "c"), {lease: expires}, xx=True)
        pipe.execute()
