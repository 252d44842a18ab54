"""The default cache: a diskcache directory (SQLite index + value files), shared by processes.

``cache = "disk:///ABS/PATH?size_limit=1GB&ttl=86400"``. diskcache is imported on
first use (``pip install 'unillm[cache]'``), never at ``import unillm``.

Data only: values are our JSON bytes, keys are hex strings. The diskcache `Disk`
used here refuses to unpickle anything, so a planted or foreign pickle in the
directory is a corrupt entry (a miss, then deleted), never code that runs.

Never breaks a call:

* a corrupt, truncated or foreign entry is a miss and is deleted;
* a ``cache.db`` that is not a database is moved aside (``cache.db.corrupt``)
  and a fresh cache is started;
* a failed write (disk full, file too large, read-only directory) stops all
  writes of this backend with one warning; reads go on, so old hits still serve;
* an unreadable index (or a directory that cannot be opened) turns the backend
  into misses only, with one warning.
"""

from __future__ import annotations

import functools
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from ..adapters.base import require
from ..offload import Offload
from .base import Degrade, OffloadedCache, Warn
from .codec import CachedEntry, CorruptEntry, decode_or_evict, encode

__all__ = ["DiskCache"]

DB_NAME = "cache.db"
# the sqlite busy timeout: a cache waits briefly for a lock, then answers a miss
LOCK_TIMEOUT = 2.0
# diskcache's own lookup (`Cache.get`'s fast path: a str key is stored with raw = 1), two columns
_SELECT = ("SELECT mode, value FROM Cache WHERE key = ? AND raw = 1"
           " AND (expire_time IS NULL OR expire_time > ?)")
_MODE_RAW = 1  # diskcache.core.MODE_RAW: the value is in the row


@functools.lru_cache(maxsize=1)
def _json_only_disk() -> type:
    """A diskcache `Disk` that stores bytes and str keys only and never unpickles."""
    dc = require("diskcache")
    from diskcache.core import MODE_PICKLE

    class JSONOnlyDisk(dc.Disk):  # type: ignore[misc,name-defined]
        def put(self, key: Any) -> Any:
            if type(key) is not str:
                raise TypeError("cache keys are str")
            return super().put(key)

        def get(self, key: Any, raw: bool) -> Any:
            if not raw:
                raise CorruptEntry("pickled key in the cache directory")
            return super().get(key, raw)

        def store(self, value: Any, read: bool, key: Any = None) -> Any:
            if type(value) is not bytes:
                raise TypeError("cache values are encoded bytes")
            return super().store(value, read, key=key)

        def fetch(self, mode: int, filename: Any, value: Any, read: bool) -> Any:
            if mode == MODE_PICKLE:
                raise CorruptEntry("pickled value in the cache directory")
            return super().fetch(mode, filename, value, read)

    return JSONOnlyDisk


@functools.lru_cache(maxsize=1)
def _closing_cache() -> type:
    """diskcache's `Cache`, keeping every thread's connection so that `close` closes them all.

    diskcache opens one connection per thread and closes only the calling thread's; the
    others (an async caller's worker threads) would wait for the garbage collector. This
    one opens them as diskcache does (its per-connection ``sqlite_*`` settings applied),
    closable from any thread; a thread that uses the cache after `close` opens anew.
    """
    dc = require("diskcache")

    class ClosingCache(dc.Cache):  # type: ignore[misc,name-defined]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._every: list[tuple[int, sqlite3.Connection]] = []
            self._every_lock = threading.Lock()
            self._generation = 0
            super().__init__(*args, **kwargs)

        @property
        def _con(self) -> sqlite3.Connection:
            local, pid = self._local, os.getpid()
            con: sqlite3.Connection | None = getattr(local, "con", None)
            if con is not None and getattr(local, "pid", None) == pid and local.generation == self._generation:
                return con
            con = sqlite3.connect(os.path.join(self._directory, DB_NAME), timeout=self._timeout,
                                  isolation_level=None, check_same_thread=False)
            local.con, local.pid, local.generation = con, pid, self._generation
            with self._every_lock:
                self._every.append((pid, con))
            try:
                settings = con.execute("SELECT key, value FROM Settings").fetchall()
            except sqlite3.OperationalError:
                settings = []  # a fresh cache: no Settings table yet
            for key, value in settings:
                if key.startswith("sqlite_"):
                    self.reset(key, value, update=False)
            return con

        def close(self) -> None:
            with self._every_lock:
                every, self._every = self._every, []
                self._generation += 1
            for pid, con in every:
                if pid == os.getpid():  # a parent's connections, seen after fork, are its own
                    con.close()

    return ClosingCache


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class DiskCache(OffloadedCache):
    """A diskcache directory. ``size_limit`` in bytes (LRS eviction beyond it); ``ttl`` in
    seconds is the default expiry of entries stored without their own; a lookup or store
    that waits ``lock_timeout`` seconds for another process is a miss or is skipped."""

    def __init__(self, directory: str | os.PathLike[str], *, size_limit: int | None = None,
                 ttl: float | None = None, warn: Warn | None = None,
                 lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.directory = Path(directory)
        self.lock_timeout = lock_timeout
        self.size_limit = size_limit
        self.default_ttl = ttl
        self.url = f"disk://{self.directory.as_posix() if self.directory.is_absolute() else self.directory}"
        self._degrade = Degrade(warn)
        self.io = Offload("unillm-cache")  # async callers' lookups and stores run here
        self._dc = require("diskcache")
        self._cache: Any = None
        try:
            self._cache = self._open()
        except Exception as exc:  # noqa: BLE001 - a cache never breaks the client: run uncached instead
            self._degrade.trip(f"response cache {self.url} cannot be opened ({_reason(exc)}); "
                               "continuing without caching", reads=True)

    # ── opening ──────────────────────────────────────────────────────────────

    def _open(self) -> Any:
        try:
            return self._make()
        except (sqlite3.OperationalError, OSError):
            raise  # cannot open or create the files: nothing to repair
        except Exception as exc:  # noqa: BLE001 - diskcache's failures on a foreign file are of any class
            # not a database at all (or malformed beyond opening): set it aside, start afresh
            self._set_aside()
            self._degrade.warn(f"response cache {self.url}: {DB_NAME} was unreadable ({_reason(exc)}); "
                               f"moved it to {DB_NAME}.corrupt and started an empty cache")
            return self._make()

    def _make(self) -> Any:
        settings: dict[str, Any] = {"eviction_policy": "least-recently-stored", "tag_index": True,
                                    "statistics": False}
        if self.size_limit is not None:
            settings["size_limit"] = self.size_limit
        return _closing_cache()(str(self.directory), timeout=self.lock_timeout, disk=_json_only_disk(),
                              **settings)

    def _set_aside(self) -> None:
        db = self.directory / DB_NAME
        os.replace(db, db.with_name(DB_NAME + ".corrupt"))
        for suffix in ("-wal", "-shm"):
            try:
                os.remove(db.with_name(DB_NAME + suffix))
            except FileNotFoundError:
                pass

    # ── the protocol ─────────────────────────────────────────────────────────

    def get(self, key: str) -> CachedEntry | None:
        if self._degrade.no_read:
            return None
        try:
            data = self._read(key)
        except CorruptEntry:
            self.delete(key)
            return None
        except self._dc.Timeout:
            return None
        except Exception as exc:  # noqa: BLE001 - malformed index, unreadable files: misses from now on
            self._degrade.trip(f"response cache {self.url} cannot be read ({_reason(exc)}); "
                               "continuing without caching", reads=True)
            return None
        if data is None:
            return None
        return decode_or_evict(data, lambda: self.delete(key))

    def _read(self, key: str) -> Any:
        """The stored bytes of ``key`` (None when absent or expired). An entry kept in the index
        (every entry under diskcache's 32 KB file threshold: all but the longest answers) is
        read with one SELECT of the two columns it needs on the thread's connection; one in
        a file, or of another mode (a planted pickle), goes through diskcache's own ``get``."""
        rows = self._cache._con.execute(_SELECT, (key, time.time())).fetchall()
        if not rows:
            return None
        ((mode, value),) = rows
        if mode == _MODE_RAW and type(value) is bytes:
            return value
        return self._cache.get(key)

    def set(self, key: str, entry: CachedEntry, ttl: float | None = None) -> None:
        if self._degrade.no_write:
            return
        data = encode(entry)
        expire = self.default_ttl if ttl is None else ttl
        try:
            self._cache.set(key, data, expire=expire, tag=entry.namespace)
        except self._dc.Timeout:
            return  # busy: this answer is simply not stored
        except Exception as exc:  # noqa: BLE001 - disk full, file too large, read-only: stop writing
            self._degrade.trip(f"response cache {self.url} cannot store entries ({_reason(exc)}); "
                               "continuing without storing new answers")

    def delete(self, key: str) -> None:
        if self._cache is None:
            return
        try:
            self._cache.delete(key)
        except Exception:  # noqa: BLE001, S110 - a read-only or full cache keeps the entry; reads keep missing it
            pass

    def clear(self, namespace: str | None = None) -> int:
        if self._cache is None:
            return 0
        if namespace is None:
            return int(self._cache.clear())
        return int(self._cache.evict(namespace))

    def prune(self) -> int:
        if self._cache is None:
            return 0
        return int(self._cache.expire())

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {"url": self.url, "entries": 0, "size_bytes": 0,
                               "size_limit": self.size_limit, "degraded": self._degrade.reason}
        if self._cache is not None and not self._degrade.no_read:
            try:
                out["entries"] = len(self._cache)
                out["size_bytes"] = int(self._cache.volume())
                out["size_limit"] = int(self._cache.size_limit)
            except Exception as exc:  # noqa: BLE001 - statistics are reported, never raised
                out["degraded"] = out["degraded"] or f"cannot read statistics ({_reason(exc)})"
        return out

    @property
    def degraded(self) -> str | None:
        """Why this backend stopped writing (or reading), or None."""
        return self._degrade.reason

    def close(self) -> None:
        self.io.close()
        if self._cache is not None:
            self._cache.close()

    def __repr__(self) -> str:
        return f"DiskCache({str(self.directory)!r}, size_limit={self.size_limit}, ttl={self.default_ttl})"
