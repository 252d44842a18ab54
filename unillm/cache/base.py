"""The cache backend protocol, the "off" backend, and the degrade-once guard.

A backend stores `CachedEntry` values under `cache_key` strings. Every backend
promises the caller one thing above all: **a cache never breaks a call**. A
corrupt entry is a miss (and is deleted); a backend that cannot write (full
disk, read-only directory) stops writing after one warning; a backend that
cannot read answers misses.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from ..offload import Offload, Offloaded
from .codec import CachedEntry

__all__ = ["CacheBackend", "NullCache", "OffloadedCache", "InlineCache", "CacheWarning", "Warn", "warn_default", "Degrade", "configured_url"]

#: how a backend reports that it degraded: called with one human sentence
Warn = Callable[[str], None]


class CacheWarning(UserWarning):
    """The response cache degraded (e.g. disk full): calls go on, uncached."""


def configured_url(url: str | None) -> str | None:
    """The cache URL in force: the setting, else ``$UNILLM_CACHE``, else None (no cache)."""
    if url is None:
        return os.environ.get("UNILLM_CACHE") or None
    return url


def warn_default(message: str) -> None:
    """Default `Warn`: a `CacheWarning` through the warnings module."""
    warnings.warn(message, CacheWarning, stacklevel=4)


@runtime_checkable
class CacheBackend(Protocol):
    """Where cache entries live. ``ttl`` is in seconds; None = the backend's default."""

    def get(self, key: str) -> CachedEntry | None:
        """The entry, or None on a miss (absent, expired, corrupt or unreadable)."""

    def set(self, key: str, entry: CachedEntry, ttl: float | None = None) -> None:
        """Store ``entry``; never raises for storage trouble (it degrades instead)."""

    async def aget(self, key: str) -> CachedEntry | None:
        """`get` for an async caller: never blocks its event loop."""

    async def aset(self, key: str, entry: CachedEntry, ttl: float | None = None) -> None:
        """`set` for an async caller: never blocks its event loop."""

    def delete(self, key: str) -> None: ...

    def clear(self, namespace: str | None = None) -> int:
        """Remove every entry (of ``namespace`` when given); returns how many."""

    def stats(self) -> dict[str, Any]:
        """At least ``entries`` and ``size_bytes``; ``url`` and ``degraded`` when known."""

    def prune(self) -> int:
        """Remove expired entries; returns how many."""

    def close(self) -> None:
        """Close files and connections (and stop the backend's threads)."""


class OffloadedCache(Offloaded):
    """``aget``/``aset`` of a backend whose I/O blocks: on the backend's own threads."""

    io: Offload

    def get(self, key: str) -> CachedEntry | None:
        raise NotImplementedError

    def set(self, key: str, entry: CachedEntry, ttl: float | None = None) -> None:
        raise NotImplementedError

    async def aget(self, key: str) -> CachedEntry | None:
        return await self.io.run(self.get, key)

    async def aset(self, key: str, entry: CachedEntry, ttl: float | None = None) -> None:
        await self.io.run(self.set, key, entry, ttl)


class InlineCache:
    """``aget``/``aset`` of a backend without I/O (memory, off): run as they are, no thread."""

    def get(self, key: str) -> CachedEntry | None:
        raise NotImplementedError

    def set(self, key: str, entry: CachedEntry, ttl: float | None = None) -> None:
        raise NotImplementedError

    async def aget(self, key: str) -> CachedEntry | None:
        return self.get(key)

    async def aset(self, key: str, entry: CachedEntry, ttl: float | None = None) -> None:
        self.set(key, entry, ttl)


class NullCache(InlineCache):
    """``cache = "off"``: every lookup misses, nothing is stored."""

    url = "off"

    def get(self, key: str) -> CachedEntry | None:
        return None

    def set(self, key: str, entry: CachedEntry, ttl: float | None = None) -> None:
        return None

    def delete(self, key: str) -> None:
        return None

    def clear(self, namespace: str | None = None) -> int:
        return 0

    def stats(self) -> dict[str, Any]:
        return {"url": self.url, "entries": 0, "size_bytes": 0, "degraded": None}

    def prune(self) -> int:
        return 0

    def close(self) -> None:
        return None

    def __repr__(self) -> str:
        return "NullCache()"


class Degrade:
    """Remembers that a backend stopped reading or writing, and warns exactly once."""

    __slots__ = ("warn", "reason", "no_write", "no_read")

    def __init__(self, warn: Warn | None) -> None:
        self.warn = warn or warn_default
        self.reason: str | None = None
        self.no_write = False
        self.no_read = False

    def trip(self, reason: str, *, reads: bool = False) -> None:
        """Stop writing (and reading when ``reads``); the first trip warns."""
        first = self.reason is None
        self.no_write = True
        self.no_read = self.no_read or reads
        if first:
            self.reason = reason
            self.warn(reason)
