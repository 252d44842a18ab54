"""Events to Python callbacks and to webhooks, never on the call's path.

Events are dicts with an ``"event"`` name from `EVENTS`. Budget events:
``{"event": "budget.alert" | "budget.exceeded", "budget", "scope", "period", "spent",
"limit", "threshold", "resets_at"}`` (money as decimal text); ``optimization.applied``
and ``api_key.invalid``: see the README's "Webhooks". Callbacks run inline and their
exceptions are logged, never raised into the call. The legacy ``[alerts] webhook`` gets
budget events as a JSON POST from a background thread, retried with exponential backoff;
a failure is logged (without the URL's path or query, which often carry a token). The
signed ``[[alerts.webhooks]]`` go through a durable outbox (`unillm.webhooks`).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("unillm.budgets")

#: what ``[[alerts.webhooks]] events`` may list (``deployment.cooldown``: `unillm.routing`)
#: (routing will emit it)
WEBHOOK_EVENTS = ("budget.alert", "budget.exceeded", "optimization.applied", "api_key.invalid",
                  "deployment.cooldown")
#: every event `Client.on` knows (per-call events, when added, stay with callbacks)
EVENTS = WEBHOOK_EVENTS
Handler = Callable[[dict[str, Any]], None]
_WARNED: set[tuple[str, ...]] = set()


class BudgetWarning(UserWarning):
    """A budget with ``on_exceed = "warn"`` is over its limit; the call goes ahead."""


def warn_over(spec: Any, slot: tuple[str, ...]) -> None:
    """``on_exceed = "warn"``: a Python warning and a log line, once per budget slot (name,
    scope value, period) per process; the call is not refused."""
    if slot in _WARNED:
        return
    _WARNED.add(slot)
    scope = f" for {slot[1]}" if len(slot) > 1 and slot[1] else ""
    limits = ", ".join(f"{what} {value}" for what, value in (
        ("$", spec.limit_usd), ("tokens", spec.limit_tokens), ("requests", spec.limit_requests))
        if value is not None).replace("$ ", "$")
    message = (f"budget {spec.name!r}{scope} is over its limit ({limits}) in {slot[-1]}; "
               'calls go ahead because on_exceed = "warn"')
    log.warning("%s", message)
    import warnings
    warnings.warn(message, BudgetWarning, stacklevel=2)


class Alerts:
    """Callbacks (`on`), the legacy ``[alerts] webhook`` and the signed ``[[alerts.webhooks]]``
    (``outbox``: a `unillm.webhooks.Outbox`) for every event in `EVENTS`."""

    def __init__(self, webhook: str | None = None, *, attempts: int = 5, backoff: float = 0.5,
                 timeout: float = 5.0, sleep: Callable[[float], None] | None = None,
                 outbox: Any = None) -> None:
        self.webhook = webhook
        self.outbox = outbox
        self.attempts, self.backoff, self.timeout = attempts, backoff, timeout
        self._sleep = sleep
        self._handlers: dict[str, list[Handler]] = {}
        self._queue: queue.Queue[dict[str, Any] | None] | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def on(self, event: str, fn: Handler) -> Handler:
        """Call ``fn(event_dict)`` on ``event`` (one of `EVENTS`, or "*")."""
        if event not in (*EVENTS, "*"):
            raise ValueError(f"unknown event {event!r}; known: {', '.join(EVENTS)}")
        self._handlers.setdefault(event, []).append(fn)
        return fn

    def emit(self, payload: dict[str, Any]) -> None:
        for fn in (*self._handlers.get(payload["event"], ()), *self._handlers.get("*", ())):
            try:
                fn(payload)
            except Exception:
                log.exception("budget event handler %r failed", fn)
        if self.webhook and payload["event"] in ("budget.alert", "budget.exceeded"):
            self._worker().put(payload)
        if self.outbox is not None and self.outbox.wants(payload["event"]):
            self.outbox.add(payload)

    def wants(self, event: str) -> bool:
        """Whether anything listens for ``event`` (an emitter may skip building it)."""
        return bool(self._handlers.get(event) or self._handlers.get("*")) or (
            bool(self.webhook) and event in ("budget.alert", "budget.exceeded")) or (
            self.outbox is not None and self.outbox.wants(event))

    def resume(self) -> None:
        """Start delivering the outbox's rows now (those an earlier process left, too)."""
        if self.outbox is not None:
            self.outbox.start()

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until queued webhooks are delivered or given up (for tests and shutdown)."""
        if self.outbox is not None and not self.outbox.flush(timeout):
            return False
        if self._queue is None:
            return True
        done, waiting = threading.Event(), self._queue

        def drain() -> None:
            waiting.join()
            done.set()
        threading.Thread(target=drain, daemon=True).start()
        return done.wait(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (waiting up to ``timeout`` seconds), then stop the webhook
        thread; a later event starts it again. Outbox rows not delivered stay for later."""
        if self.outbox is not None:
            self.outbox.close(timeout)
        with self._lock:
            q, thread, self._queue, self._thread = self._queue, self._thread, None, None
        if q is None or thread is None:
            return
        q.put(None)  # after everything queued: the thread delivers it all, then exits
        thread.join(timeout)

    def _worker(self) -> queue.Queue[dict[str, Any] | None]:
        with self._lock:
            if self._queue is None:
                self._queue = queue.Queue()
                self._thread = threading.Thread(target=self._run, args=(self._queue,), name="unillm-webhook",
                                                daemon=True)
                self._thread.start()
        return self._queue

    def _run(self, q: queue.Queue[dict[str, Any] | None]) -> None:
        while True:
            payload = q.get()
            if payload is None:
                q.task_done()
                return
            try:
                self._deliver(payload)
            except Exception as exc:  # noqa: BLE001 - delivery failed for good: logged; the thread lives on
                where = urlsplit(self.webhook or "")
                log.warning("budget webhook to %s://%s failed after %d attempts: %s",
                            where.scheme, where.netloc, self.attempts, exc)
            finally:
                q.task_done()

    def _deliver(self, payload: dict[str, Any]) -> None:
        import tenacity
        body = json.dumps(payload).encode()
        for attempt in tenacity.Retrying(stop=tenacity.stop_after_attempt(self.attempts), reraise=True,
                                         wait=tenacity.wait_exponential(multiplier=self.backoff, max=30),
                                         sleep=self._sleep or tenacity.nap.sleep):
            with attempt:
                req = urllib.request.Request(self.webhook or "", data=body, method="POST",
                                             headers={"content-type": "application/json",
                                                      "user-agent": "unillm-budgets"})
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    resp.read()
