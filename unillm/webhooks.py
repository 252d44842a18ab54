"""Signed webhooks for every event, delivered at least once through an outbox.

Each ``[[alerts.webhooks]]`` (`unillm.config.WebhookSettings`) receives the events it lists
as JSON POSTs. An event bound for an endpoint first becomes a row of
``unillm_webhook_outbox`` in the ledger's database (SQLite or PostgreSQL), then a
background thread delivers it, retrying with exponential backoff until the endpoint
answers 2xx or ``max_attempts`` is spent (the row is then marked ``failed``, the reason
kept). A row not yet delivered outlives the process: the next process with the same
endpoint configured resumes it (``unillm serve`` at startup, a `Client` at its first
event). Every worker of every host may deliver; a row is leased by one at a time. An
endpoint can see an event twice (a crash after it answered, before the row was marked):
the ``unillm-webhook-id`` header (and the body's ``id``) is the same on every attempt,
so receivers deduplicate on it.

Signature (Stripe's scheme): ``unillm-signature: t=<unix seconds>,v1=<hex>`` where
``hex = HMAC-SHA256(secret, f"{t}." + raw body)``; ``t`` is also sent as
``unillm-webhook-timestamp``. A receiver recomputes it over the raw bytes, compares in
constant time and refuses old timestamps (replays). See the README's "Webhooks".

Events written from a call's own thread (budget alerts, settled with the call) are in the
outbox before ``chat()`` returns; events raised on an event loop (a rule applied in
``achat``, a gateway's invalid key) are queued in memory and written by the delivery
thread within milliseconds, so only a crash in that window loses one.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger("unillm.webhooks")

OUTBOX = "unillm_webhook_outbox"
ID_HEADER = "unillm-webhook-id"
TIMESTAMP_HEADER = "unillm-webhook-timestamp"
SIGNATURE_HEADER = "unillm-signature"
#: delivered and failed rows are deleted after this many seconds (any row this old, too)
KEEP_SECONDS = 7 * 86400

__all__ = ["ID_HEADER", "OUTBOX", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "Outbox", "hook_id", "sign",
           "verify"]


def hook_id(url: str) -> str:
    """The name an endpoint's rows carry: a hash of its URL (which may hold a token)."""
    return hashlib.sha256(url.encode()).hexdigest()[:20]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The ``unillm-signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify(secret: str, header: str, body: bytes, *, tolerance: float = 300.0,
           now: float | None = None) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` and is at most ``tolerance``
    seconds old (what a receiver runs; the README shows the same in a few lines)."""
    parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
    try:
        ts = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    expected = sign(secret, ts, body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def _where(url: str) -> str:
    """An endpoint for logs: scheme and host only (paths and queries often hold tokens)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer that is not 2xx (urllib would turn the POST into a GET)."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _on_event_loop() -> bool:
    asyncio = sys.modules.get("asyncio")
    if asyncio is None:
        return False
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Outbox:
    """The endpoints of ``[[alerts.webhooks]]`` and the thread delivering their rows.

    ``store()`` is the ledger's store (opened on first use); ``clock`` gives Unix seconds.
    The thread sleeps until its next row is due or a new event arrives, and looks for rows
    other processes left at least every ``poll`` seconds.
    """

    def __init__(self, hooks: Sequence[Any], store: Callable[[], Any], *,
                 clock: Callable[[], float] = time.time, poll: float = 30.0) -> None:
        self.hooks = {hook_id(h.url): h for h in hooks}
        self._for: dict[str, list[str]] = {}
        for hid, h in self.hooks.items():
            for event in h.events:
                self._for.setdefault(event, []).append(hid)
        self._store_of, self._db = store, None
        self._clock, self._poll = clock, poll
        self._queued: deque[tuple[str, str, str, str]] = deque()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._pruned_at = 0.0

    def wants(self, event: str) -> bool:
        return event in self._for

    # ── enqueue ──
    def add(self, payload: dict[str, Any]) -> list[str]:
        """Make ``payload`` (an event dict) a row for each endpoint listing its event; the ids.
        Written now unless this thread runs an event loop (then by the delivery thread)."""
        hooks = self._for.get(payload.get("event", ""), [])
        if not hooks:
            return []
        created = self._clock()
        rows = []
        for hid in hooks:
            rid = "evt_" + uuid.uuid4().hex
            body = json.dumps({**payload, "id": rid, "created": int(created)}, default=str, sort_keys=True)
            rows.append((rid, hid, payload["event"], body))
        if _on_event_loop():
            self._queued.extend(rows)
        else:
            try:
                self._insert(rows, created)
            except Exception:
                log.exception("could not write webhook events to the outbox; retrying in the background")
                self._queued.extend(rows)
        self.start()
        self._wake.set()
        return [r[0] for r in rows]

    def _store(self) -> Any:
        if self._db is None:
            self._db = self._store_of()
        return self._db

    def _insert(self, rows: Iterable[tuple[str, str, str, str]], now: float) -> None:
        with self._store().transaction() as tx:
            for rid, hid, event, body in rows:
                tx.execute(f"INSERT INTO {OUTBOX} (id, hook, event, body, created_at, next_at) "
                           "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING", (rid, hid, event, body, now, now))

    def _write_queued(self) -> None:
        rows = []
        while self._queued:
            rows.append(self._queued.popleft())
        if rows:
            try:
                self._insert(rows, self._clock())
            except Exception:
                self._queued.extendleft(reversed(rows))
                raise

    # ── the delivery thread ──
    def start(self) -> None:
        """Start delivering (and resume rows an earlier process left); idempotent."""
        if not self.hooks:
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="unillm-webhooks", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while not self._stopping:
            wait = self._poll
            try:
                self._write_queued()
                busy, due = self._deliver_due()
                self._prune()
                if busy:
                    continue
                if due is not None:
                    wait = min(wait, max(due - self._clock(), 0.01))
            except Exception:
                log.exception("webhook outbox round failed")
            self._wake.wait(wait)
            self._wake.clear()

    def _deliver_due(self) -> tuple[bool, float | None]:
        """Deliver the rows due now: (whether any was tried, when the next one is due)."""
        now = self._clock()
        marks = ", ".join("?" * len(self.hooks))
        with self._store().transaction() as tx:
            due = tx.execute(f"SELECT id, hook, body, attempts FROM {OUTBOX} WHERE state = 'pending' "
                             f"AND hook IN ({marks}) AND next_at <= ? AND (lease_until IS NULL OR "
                             "lease_until < ?) ORDER BY created_at LIMIT 20",
                             (*self.hooks, now, now)).fetchall()
            nxt = tx.execute(f"SELECT MIN(CASE WHEN lease_until > next_at THEN lease_until ELSE next_at END) "
                             f"FROM {OUTBOX} WHERE state = 'pending' AND hook IN ({marks})",
                             tuple(self.hooks)).fetchone()[0]
        tried = False
        for rid, hid, body, attempts in due:
            if self._stopping:
                break
            hook = self.hooks[hid]
            if not self._claim(rid, hook):
                continue
            tried = True
            error = self._post(hook, rid, body.encode())
            self._settle(rid, hook, attempts + 1, error)
        return tried, None if nxt is None else float(nxt)

    def _claim(self, rid: str, hook: Any) -> bool:
        """Lease the row to this process for one attempt (no other worker posts it meanwhile)."""
        now = self._clock()
        with self._store().transaction() as tx:
            cur = tx.execute(f"UPDATE {OUTBOX} SET lease_until = ? WHERE id = ? AND state = 'pending' "
                             "AND (lease_until IS NULL OR lease_until < ?)", (now + 2 * hook.timeout + 5, rid, now))
            return bool(cur.rowcount == 1)

    def _post(self, hook: Any, rid: str, body: bytes) -> str | None:
        """One attempt; None when the endpoint answered 2xx, else why not."""
        ts = int(self._clock())
        headers = {"content-type": "application/json", "user-agent": "unillm-webhooks",
                   ID_HEADER: rid, TIMESTAMP_HEADER: str(ts)}
        if hook.secret:
            headers[SIGNATURE_HEADER] = sign(hook.secret, ts, body)
        req = urllib.request.Request(hook.url, data=body, method="POST", headers=headers)
        try:
            with _OPENER.open(req, timeout=hook.timeout) as resp:
                resp.read()
            return None
        except urllib.error.HTTPError as exc:
            return f"HTTP {exc.code}"
        except Exception as exc:  # noqa: BLE001 - any failure to deliver is retried
            return type(exc).__name__ + (f": {exc.reason}" if isinstance(exc, urllib.error.URLError) else "")

    def _settle(self, rid: str, hook: Any, attempts: int, error: str | None) -> None:
        now = self._clock()
        with self._store().transaction() as tx:
            if error is None:
                tx.execute(f"UPDATE {OUTBOX} SET state = 'delivered', attempts = ?, done_at = ?, "
                           "lease_until = NULL, last_error = NULL WHERE id = ?", (attempts, now, rid))
                return
            if attempts >= hook.max_attempts:
                log.warning("webhook %s to %s given up after %d attempts: %s", rid, _where(hook.url),
                            attempts, error)
                tx.execute(f"UPDATE {OUTBOX} SET state = 'failed', attempts = ?, done_at = ?, "
                           "lease_until = NULL, last_error = ? WHERE id = ?", (attempts, now, error, rid))
                return
            wait = min(hook.retry_max, hook.retry_initial * 2 ** (attempts - 1)) * random.uniform(0.8, 1.0)
            tx.execute(f"UPDATE {OUTBOX} SET attempts = ?, next_at = ?, lease_until = NULL, last_error = ? "
                       "WHERE id = ?", (attempts, now + wait, error, rid))

    def _prune(self) -> None:
        now = self._clock()
        if now - self._pruned_at < 3600:
            return
        self._pruned_at = now
        with self._store().transaction() as tx:
            # a pending row that old belongs to an endpoint no longer configured
            tx.execute(f"DELETE FROM {OUTBOX} WHERE (state <> 'pending' AND done_at < ?) OR created_at < ?",
                       (now - KEEP_SECONDS, now - KEEP_SECONDS))

    # ── waiting and stopping ──
    def pending(self) -> int:
        """Rows of the configured endpoints not yet delivered nor given up (queued ones too)."""
        if not self.hooks:
            return 0
        marks = ", ".join("?" * len(self.hooks))
        with self._store().transaction() as tx:
            row = tx.execute(f"SELECT COUNT(*) FROM {OUTBOX} WHERE state = 'pending' AND hook IN ({marks})",
                             tuple(self.hooks)).fetchone()
        return int(row[0]) + len(self._queued)

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every row is delivered or given up (True), or ``timeout`` passes."""
        if not self.hooks:
            return True
        end = time.monotonic() + timeout
        while self.pending():
            if time.monotonic() > end:
                return False
            self._wake.set()
            time.sleep(0.02)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued to the outbox and stop the thread; rows not yet delivered
        stay for the next process (``timeout``: how long to wait for the thread)."""
        with self._lock:
            thread, self._thread = self._thread, None
        self._stopping = True
        self._wake.set()
        if thread is not None:
            thread.join(timeout)
        if self._queued and self._db is not None:
            try:
                self._write_queued()
            except Exception:
                log.exception("could not write %d queued webhook events to the outbox", len(self._queued))
        self._db = None
