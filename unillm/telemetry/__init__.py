"""What a call tells the outside: `Client.on` callbacks (`unillm.events`), OpenTelemetry
spans and metrics (`unillm.telemetry.otel`, ``telemetry = "otel"``) and one JSON log line
per ledger row (``log_format = "json"``, logger ``unillm.calls``, INFO).

`Observer` is the client's single hook: ``attempt(call)`` when an HTTP attempt starts,
``recorded(rec, call, resp, held)`` when its ledger row is written, ``finished(call, ...)``
instead when an answered call makes no row (no ledger, and only tracing wants it: see
`rows`), ``failed(call)`` when a call gives up. Nothing here is imported or run unless one of the three is in use. The JSON
line is the row without prompt and answer (never an API key: rows hold none).
"""

from __future__ import annotations

import json
import logging
from contextvars import ContextVar, Token
from typing import Any

from ..events import Events, payload

#: W3C trace context headers (``traceparent``) for the request being sent, set by the
#: tracer around each attempt; adapters whose SDK takes per-request headers add them
TRACE_HEADERS: ContextVar[dict[str, str] | None] = ContextVar("unillm_trace_headers", default=None)

calls_log = logging.getLogger("unillm.calls")

__all__ = ["TRACE_HEADERS", "Observer"]


class Observer:
    """Callbacks, tracing and JSON logs of one client (see the module docstring)."""

    def __init__(self, telemetry: str = "off", log_format: str = "text", log_content: bool = False,
                 ledger: bool = True) -> None:
        self.events = Events()
        self.tracer: Any = None
        if telemetry == "otel":
            from .otel import Tracing
            self.tracer = Tracing(log_content=log_content, ledger=ledger)
        self.json_logs = log_format == "json"

    @property
    def active(self) -> bool:
        """Whether a written row has anywhere to go (else the client skips the hook)."""
        return self.tracer is not None or self.json_logs or bool(self.events)

    @property
    def rows(self) -> bool:
        """Whether anything here takes the `CallRecord` itself (callbacks, JSON logs): else,
        with no ledger, an answered call needs none (`finished`)."""
        return self.json_logs or bool(self.events)

    def attempt(self, call: Any) -> tuple[Token[dict[str, str] | None], object] | None:
        """An HTTP attempt of ``call`` starts: its span, current, and the headers that carry it."""
        if self.tracer is None:
            return None
        headers, current = self.tracer.attempt(call)
        return TRACE_HEADERS.set(headers), current

    def sent(self, tokens: tuple[Token[dict[str, str] | None], object] | None) -> None:
        """The attempt's request is sent (or failed): its span is no longer current."""
        if tokens is not None:
            TRACE_HEADERS.reset(tokens[0])
            self.tracer.detach(tokens[1])

    def recorded(self, rec: Any, call: Any = None, resp: Any = None, held: bool = False) -> None:
        """A ledger row was written: spans end, events are queued, the JSON line is logged."""
        if self.tracer is not None:
            try:
                self.tracer.recorded(rec, call, resp, held)
            except Exception:  # telemetry never breaks a call
                logging.getLogger("unillm.telemetry").exception("recording a span failed")
        if self.events:
            self.events.emit(rec)
        if self.json_logs and calls_log.isEnabledFor(logging.INFO):
            calls_log.info("%s", json.dumps({"event": "unillm.call", **payload(rec)}, default=str))

    def finished(self, call: Any, status: str, resp: Any, cost: Any, error: BaseException | None,
                 saved: Any) -> None:
        """An answered call of a client without a ledger or `rows`: its span ends, its metrics
        are counted, from what the call holds (`unillm.telemetry.outcome`)."""
        if self.tracer is not None:
            try:
                self.tracer.finished(call, status, resp, cost, error, saved)
            except Exception:  # telemetry never breaks a call
                logging.getLogger("unillm.telemetry").exception("recording a span failed")

    def failed(self, call: Any, err: BaseException) -> None:
        """The call gave up (no further fallback): its parent span ends with the error."""
        if self.tracer is not None:
            self.tracer.failed(call, err)

    def close(self) -> None:
        self.events.close()
