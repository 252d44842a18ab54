"""Per-call events for `Client.on`: what every finished ledger row tells, off the call's path.

``client.on(name, fn)`` registers ``fn(record)`` for:

=============== ==============================================================================
``call``        every row that ends a try of one model: the answer (``ok``, ``unpriced``,
                ``partial``), a cache hit, or a failure not retried (``error``, ``unknown``,
                ``budget_denied``, ``rule_denied``). A fallback chain gives one per model
                tried, linked by ``record.call_id`` (``record.fallback_from`` names the first).
                Retried attempts are rows too, but not events.
``call.error``  a ``call`` whose status is ``error``, ``unknown``, ``budget_denied`` or
                ``rule_denied`` (``record.error_class`` names the error)
``cache.hit``   a ``call`` answered from the response cache (``record.saved_usd``: its saving)
``rule.applied`` a ``call`` a rule changed (``record.rule``; ``record.sent_model`` after a swap)
=============== ==============================================================================

The payload is the `unillm.ledger.CallRecord` the ledger stored (immutable; money as Decimal
USD, ``prompt``/``response`` only with ``log_content = true``; never an API key);
`payload` turns it into JSON-ready data (money as decimal text) for webhooks.
``budget.alert``, ``budget.exceeded``, ``optimization.applied`` and ``api_key.invalid``
stay with `unillm.budgets.alerts` (dict payloads, run inline).

Per-call callbacks run on one background thread ("unillm-events"), in order: a slow one
delays later events, never a call; an exception is logged (logger ``unillm.events``) and
the next event still runs. `Events.flush` waits for those queued (tests, shutdown).
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import Any

log = logging.getLogger("unillm.events")

#: the per-call events `Client.on` accepts, in addition to `unillm.budgets.alerts.EVENTS`
CALL_EVENTS = ("call", "call.error", "cache.hit", "rule.applied")
#: statuses of a row that is a ``call.error``
FAILED = frozenset({"error", "unknown", "budget_denied", "rule_denied"})
Handler = Callable[[Any], None]

__all__ = ["CALL_EVENTS", "FAILED", "Events", "names_for", "payload"]


def names_for(record: Any) -> tuple[str, ...]:
    """The events one ledger row raises (none for a retried attempt or an in-flight row)."""
    if record.retried or record.status == "in_flight":
        return ()
    names = ["call"]
    if record.status in FAILED:
        names.append("call.error")
    elif record.status == "cache_hit":
        names.append("cache.hit")
    if record.rule is not None:
        names.append("rule.applied")
    return tuple(names)


def payload(record: Any, *, content: bool = False) -> dict[str, Any]:
    """``record`` as JSON-ready data: Decimal as text (exact), datetimes ISO 8601; the prompt
    and answer left out unless ``content``."""
    out: dict[str, Any] = {}
    for name, value in record.to_dict().items():
        if not content and name in ("prompt", "response"):
            continue
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, dict):
            value = {k: str(v) if isinstance(v, Decimal) else v for k, v in value.items()}
        elif isinstance(value, tuple):
            value = list(value)
        out[name] = value
    return out


class Events:
    """Handlers of `CALL_EVENTS`, run on a background thread."""

    def __init__(self) -> None:
        self._handlers: dict[str, list[Handler]] = {}
        self._queue: queue.Queue[tuple[Handler, Any] | None] | None = None
        self._lock = threading.Lock()

    def __bool__(self) -> bool:
        return bool(self._handlers)

    def on(self, event: str, fn: Handler) -> Handler:
        """Call ``fn(record)`` on ``event`` (one of `CALL_EVENTS`, or "*": every ``call``)."""
        if event not in (*CALL_EVENTS, "*"):
            raise ValueError(f"unknown event {event!r}; known: {', '.join(CALL_EVENTS)}")
        self._handlers.setdefault("call" if event == "*" else event, []).append(fn)
        return fn

    def emit(self, record: Any) -> None:
        """Queue ``record`` for the handlers of every event it raises; returns at once."""
        for name in names_for(record):
            for fn in self._handlers.get(name, ()):
                self._worker().put((fn, record))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued callback has run; False if ``timeout`` passed first."""
        q = self._queue
        if q is None:
            return True
        done = threading.Event()
        q.put((lambda _: done.set(), None))
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Run what is queued (up to ``timeout``), then stop the thread; a later event restarts it."""
        with self._lock:
            q, self._queue = self._queue, None
        if q is not None:
            done = threading.Event()
            q.put((lambda _: done.set(), None))
            q.put(None)
            done.wait(timeout)

    def _worker(self) -> queue.Queue[tuple[Handler, Any] | None]:
        q = self._queue
        if q is not None:
            return q
        with self._lock:
            if self._queue is None:
                self._queue = queue.Queue()
                threading.Thread(target=_run, args=(self._queue,), name="unillm-events", daemon=True).start()
            return self._queue


def _run(q: queue.Queue[tuple[Handler, Any] | None]) -> None:
    while True:
        item = q.get()
        if item is None:
            return
        fn, record = item
        try:
            fn(record)
        except Exception:
            log.exception("call event handler %r failed", fn)
