"""The shared cache: a Redis database, for many processes on many hosts.

``cache = "redis://[[USER]:PASSWORD@]HOST:PORT/DB?ttl=86400&prefix=unillm:cache:&timeout=1"``
(``rediss://`` for TLS). redis-py is imported on first use
(``pip install 'unillm[redis]'``), never at ``import unillm``.

Same keys, entries and replay as every backend (`codec`): values are our JSON
bytes, never pickles. Layout, under the ``prefix`` (default ``unillm:cache:``)::

    {prefix}e:{key}              the encoded entry (PX = its TTL)
    {prefix}n:{namespace}:{key}  an empty marker with the same TTL, so that
                                 clear(namespace) finds its keys with SCAN

Redis expires entries itself, so `prune` has nothing to do.

Never breaks a call: a corrupt entry is a miss and is deleted; when Redis cannot
be reached (refused, timed out, gone mid-run) the backend answers misses and
skips writes, warns ONCE, and tries the server again every ``retry_after``
seconds, so caching resumes by itself when Redis is back.
"""

from __future__ import annotations

import importlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from .. import errors
from ..offload import Offload
from .base import OffloadedCache, Warn, warn_default
from .codec import CachedEntry, decode_or_evict, encode

__all__ = ["DEFAULT_PREFIX", "RedisCache"]

DEFAULT_PREFIX = "unillm:cache:"
_BATCH = 500


def _require_redis() -> Any:
    try:
        return importlib.import_module("redis")
    except ImportError as exc:
        raise errors.MissingDependencyError("redis", "redis") from exc


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return parts._replace(netloc=f"{parts.username or ''}:***@{host}").geturl()


def _glob(text: str) -> str:
    """``text`` escaped for a SCAN MATCH pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class RedisCache(OffloadedCache):
    """Entries in Redis. ``ttl`` (seconds) is the default expiry of entries stored without
    their own; ``timeout`` bounds every round trip, so a hung server costs a call at most
    that long; after a failure the server is tried again ``retry_after`` seconds later."""

    def __init__(self, url: str, *, ttl: float | None = None, prefix: str = DEFAULT_PREFIX,
                 timeout: float = 1.0, retry_after: float = 30.0, warn: Warn | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        redis = _require_redis()
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.url = redact(url)
        self.default_ttl = ttl
        self.prefix = prefix
        self.retry_after = retry_after
        self._warn = warn or warn_default
        self._clock = clock
        self._errors: tuple[type[BaseException], ...] = (redis.RedisError, OSError)
        self._lock = threading.Lock()
        self.io = Offload("unillm-cache")  # async callers' round trips run here
        self._warned = False
        self._down_until: float | None = None
        self.degraded: str | None = None
        self._password = urlsplit(url).password or ""
        try:  # builds a pool; connects lazily, on the first command
            self._r = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 1), health_check_interval=0)
        except ValueError as exc:
            raise errors.ConfigError(f"bad Redis URL: {exc}", key="cache",
                                     value=self.url) from None

    # ── availability ─────────────────────────────────────────────────────────

    def _up(self) -> bool:
        """False while backing off after a failure."""
        down = self._down_until
        return down is None or self._clock() >= down

    def _failed(self, exc: BaseException, doing: str) -> None:
        """Back off for ``retry_after`` seconds; the first failure ever warns."""
        reason = f"{type(exc).__name__}: {exc}"
        if self._password:
            reason = reason.replace(self._password, "***")
        with self._lock:
            self._down_until = self._clock() + self.retry_after
            self.degraded = (f"response cache {self.url} cannot {doing} ({reason}); continuing "
                             f"without caching, retrying every {self.retry_after:g}s")
            first, self._warned = not self._warned, True
        if first:
            self._warn(self.degraded)

    def _ok(self) -> None:
        if self._down_until is not None:
            with self._lock:
                self._down_until = None
                self.degraded = None

    # ── keys ─────────────────────────────────────────────────────────────────

    def _entry_key(self, key: str) -> str:
        return f"{self.prefix}e:{key}"

    def _marker(self, namespace: str, key: str) -> str:
        return f"{self.prefix}n:{namespace}:{key}"

    def _scan(self, pattern: str) -> Iterator[list[bytes]]:
        """Keys matching ``pattern``, in batches."""
        batch: list[bytes] = []
        for k in self._r.scan_iter(match=pattern, count=1000):
            batch.append(k)
            if len(batch) >= _BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    # ── the protocol ─────────────────────────────────────────────────────────

    def get(self, key: str) -> CachedEntry | None:
        if not self._up():
            return None
        try:
            data = self._r.get(self._entry_key(key))
        except self._errors as exc:
            self._failed(exc, "be read")
            return None
        self._ok()
        if data is None:
            return None
        return decode_or_evict(data, lambda: self.delete(key))

    def set(self, key: str, entry: CachedEntry, ttl: float | None = None) -> None:
        if not self._up():
            return
        ttl = self.default_ttl if ttl is None else ttl
        if ttl is not None and ttl <= 0:
            return  # expired on arrival
        px = None if ttl is None else max(1, int(ttl * 1000))
        data = encode(entry)
        try:
            pipe = self._r.pipeline(transaction=True)
            pipe.set(self._entry_key(key), data, px=px)
            pipe.set(self._marker(entry.namespace, key), b"", px=px)
            pipe.execute()
        except self._errors as exc:
            self._failed(exc, "store entries")
            return
        self._ok()

    def delete(self, key: str) -> None:
        if not self._up():
            return
        try:
            self._r.unlink(self._entry_key(key))
        except self._errors as exc:
            self._failed(exc, "delete entries")

    def clear(self, namespace: str | None = None) -> int:
        """Remove every entry under the prefix (or of ``namespace``); how many entries went."""
        if namespace is None:
            removed = 0
            for batch in self._scan(_glob(self.prefix) + "*"):
                entries = [k for k in batch if k.startswith(f"{self.prefix}e:".encode())]
                removed += int(self._r.unlink(*entries)) if entries else 0
                others = [k for k in batch if k not in set(entries)]
                if others:
                    self._r.unlink(*others)
            return removed
        head = self._marker(namespace, "").encode()
        removed = 0
        for markers in self._scan(_glob(head.decode()) + "*"):
            keys = [self._entry_key(m[len(head):].decode()) for m in markers]
            removed += int(self._r.unlink(*keys))
            self._r.unlink(*markers)
        return removed

    def prune(self) -> int:
        return 0  # Redis expires entries by itself

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "entries": 0, "size_bytes": 0,
                               "prefix": self.prefix, "ttl": self.default_ttl,
                               "degraded": self.degraded}
        try:
            for batch in self._scan(_glob(f"{self.prefix}e:") + "*"):
                pipe = self._r.pipeline(transaction=False)
                for k in batch:
                    pipe.strlen(k)
                sizes = pipe.execute()
                out["entries"] += sum(1 for s in sizes if s)
                out["size_bytes"] += sum(sizes)
        except self._errors as exc:
            self._failed(exc, "be read")
            out["degraded"] = self.degraded
        return out

    def close(self) -> None:
        self.io.close()
        try:
            self._r.close()
        except self._errors:
            pass

    def __repr__(self) -> str:
        return f"RedisCache({self.url!r}, prefix={self.prefix!r}, ttl={self.default_ttl})"
