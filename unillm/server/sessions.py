"""Dashboard sessions and their cookie's name.

Apart from `dashboard` so that `app` (which checks a session on every browser request) and
`dashboard` (which opens and ends them) both import it rather than each other.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections.abc import Callable

SESSION_COOKIE = "unillm_session"


class Sessions:
    """Dashboard sessions of one gateway process: random id -> key id, until they expire.

    Ids are stored hashed; at most ``limit`` live at once (the oldest go first).
    """

    def __init__(self, ttl: float, *, limit: int = 10_000,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.limit, self._now = ttl, limit, monotonic
        self._by_hash: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def start(self, key_id: str) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            if len(self._by_hash) >= self.limit:
                self._expire(force=True)
            self._by_hash[_digest(sid)] = (self._now() + self.ttl, key_id)
        return sid

    def key_id(self, sid: str | None) -> str | None:
        if not sid or len(sid) > 100:
            return None
        with self._lock:
            hit = self._by_hash.get(_digest(sid))
            if hit is None:
                return None
            if hit[0] <= self._now():
                del self._by_hash[_digest(sid)]
                return None
            return hit[1]

    def end(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._by_hash.pop(_digest(sid), None)

    def _expire(self, force: bool) -> None:
        now = self._now()
        self._by_hash = {h: v for h, v in self._by_hash.items() if v[0] > now}
        if force and len(self._by_hash) >= self.limit:
            oldest = sorted(self._by_hash, key=lambda h: self._by_hash[h][0])
            for h in oldest[: len(oldest) - self.limit + 1]:
                del self._by_hash[h]


def _digest(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()
