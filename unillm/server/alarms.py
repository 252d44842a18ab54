"""Gateway events for `Client.on` and ``[[alerts.webhooks]]`` (the client emits the rest)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from .keys import PREFIX

#: at most one ``api_key.invalid`` event per this many seconds per process
INVALID_KEY_EVERY = 60.0


class InvalidKeys:
    """``api_key.invalid``: the first invalid key at once, then at most one event per
    `INVALID_KEY_EVERY` seconds, each with the ``count`` of invalid keys seen since the last
    (a flood of bad keys never becomes a flood of webhooks). The event carries the key's
    public prefix (what ``unillm keys list`` shows) when it has unillm's form, never more."""

    def __init__(self, alerts: Any, *, clock: Callable[[], float] = time.monotonic,
                 every: float = INVALID_KEY_EVERY) -> None:
        self._alerts, self._clock, self._every = alerts, clock, every
        self._last: float | None = None
        self._count = 0

    def seen(self, secret: str) -> None:
        self._count += 1
        now = self._clock()
        if self._last is not None and now - self._last < self._every:
            return
        if not self._alerts.wants("api_key.invalid"):
            return
        self._last, count, self._count = now, self._count, 0
        prefix = secret[:10] if secret.startswith(PREFIX) and secret.isprintable() else None
        self._alerts.emit({"event": "api_key.invalid", "key_prefix": prefix, "count": count,
                           "at": datetime.now(timezone.utc).isoformat()})
