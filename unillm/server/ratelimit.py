"""Per-key RPM/TPM limits: an in-process sliding window of the last 60 seconds.

In-process means per gateway process: run one process per host (uvicorn's
default), or expect each of N processes to admit up to the limit. A request is
admitted while fewer than ``rpm`` requests and fewer than ``tpm`` tokens were
used in the window; tokens are counted when a call finishes (its real usage),
so one large call may overshoot a TPM limit once, and the next waits. The clock
is injected (tests move it, never sleep).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Window:
    requests: deque[float] = field(default_factory=deque)
    tokens: deque[tuple[float, int]] = field(default_factory=deque)
    token_sum: int = 0


class Limited(Exception):
    """Over a limit: which one, and how long until a request would be admitted."""

    def __init__(self, limit: str, value: int, retry_after: float) -> None:
        super().__init__(f"rate limit reached: {value} {limit}; retry after {retry_after:.1f}s")
        self.limit, self.value, self.retry_after = limit, value, retry_after


class RateLimiter:
    """Sliding-window request and token counts per key id."""

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
                raise Limited("tokens per minute", tpm, self._token_wait(w, tpm, now))
            w.requests.append(now)

    def _token_wait(self, w: _Window, tpm: int, now: float) -> float:
        """Seconds until the tokens in the window drop below ``tpm``."""
        left = w.token_sum
        for at, n in w.tokens:
            left -= n
            if left < tpm:
                return at + self.window - now
        return self.window

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

    def usage(self, key_id: str) -> tuple[int, int]:
        """(requests, tokens) in the current window."""
        now = self.clock()
        with self._lock:
            w = self._keys.get(key_id)
            if w is None:
                return 0, 0
            self._prune(w, now)
            return len(w.requests), w.token_sum
