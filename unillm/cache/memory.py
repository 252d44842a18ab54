"""In-process LRU cache with TTL, for tests and notebooks (``cache = "memory"``).

Entries are kept encoded (the same JSON bytes the disk backend stores), so a hit
is a fresh object the caller may change freely, and ``size_bytes`` is honest.
The clock is injectable: TTLs are tested without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

from .base import InlineCache
from .codec import CachedEntry, decode_or_evict, encode

__all__ = ["MemoryCache"]


class _Slot(NamedTuple):
    data: bytes
    namespace: str
    expires_at: float | None


class MemoryCache(InlineCache):
    """Least-recently-used eviction beyond ``max_entries``; expiry after ``ttl`` seconds."""

    def __init__(self, *, max_entries: int = 1024, ttl: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.default_ttl = ttl
        self._clock = clock
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._lock = threading.Lock()
        self.url = f"memory://?max_entries={max_entries}" + (f"&ttl={ttl:g}" if ttl else "")

    def get(self, key: str) -> CachedEntry | None:
        with self._lock:
            slot = self._slots.get(key)
            if slot is None:
                return None
            if slot.expires_at is not None and slot.expires_at <= self._clock():
                del self._slots[key]
                return None
            self._slots.move_to_end(key)
        return decode_or_evict(slot.data, lambda: self.delete(key))

    def set(self, key: str, entry: CachedEntry, ttl: float | None = None) -> None:
        ttl = self.default_ttl if ttl is None else ttl
        expires_at = self._clock() + ttl if ttl is not None else None
        slot = _Slot(encode(entry), entry.namespace, expires_at)
        with self._lock:
            self._slots[key] = slot
            self._slots.move_to_end(key)
            while len(self._slots) > self.max_entries:
                self._slots.popitem(last=False)

    def delete(self, key: str) -> None:
        with self._lock:
            self._slots.pop(key, None)

    def clear(self, namespace: str | None = None) -> int:
        with self._lock:
            if namespace is None:
                n = len(self._slots)
                self._slots.clear()
                return n
            doomed = [k for k, s in self._slots.items() if s.namespace == namespace]
            for k in doomed:
                del self._slots[k]
            return len(doomed)

    def prune(self) -> int:
        now = self._clock()
        with self._lock:
            doomed = [k for k, s in self._slots.items() if s.expires_at is not None and s.expires_at <= now]
            for k in doomed:
                del self._slots[k]
            return len(doomed)

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"url": self.url, "entries": len(self._slots),
                    "size_bytes": sum(len(s.data) for s in self._slots.values()), "degraded": None}

    def close(self) -> None:
        return None

    def __len__(self) -> int:
        return len(self._slots)

    def __repr__(self) -> str:
        return f"MemoryCache(max_entries={self.max_entries}, ttl={self.default_ttl})"
