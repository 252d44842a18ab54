"""`Outcome`: what a span and the metrics read of a finished attempt when no ledger row is made.

With ``ledger = "off"`` and nothing else that takes rows (no ``client.on`` callback, no JSON
log line), a traced call has no `CallRecord` to build: the tracer reads the same fields, by
the same names, from this small object made from what the call already holds. A
`CallRecord` (when one is made) is read in its place; both give the same attributes.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..ledger.money import normalize
from ..ledger.records import new_id


class Outcome:
    """The fields of a ledger row that tracing and metrics read (``id`` None: no row)."""

    __slots__ = ("provider", "model", "sent_model", "requested_model", "status", "id", "call_id",
                 "attempt", "retried", "latency_ms", "prompt_tokens", "output_tokens", "usage_source",
                 "total_usd", "saved_usd", "cache_status", "rule", "deployment", "fallback_from",
                 "error_class")

    def __init__(self, call: Any, status: str, usage: Any, cost: Any, error: BaseException | None,
                 saved: Decimal | None, model: str) -> None:
        if call.call_id is None:  # as `record_for` does: the call's later rows share it
            call.call_id = new_id()
        self.provider, self.model, self.sent_model = call.ref.provider, model, call.ref.model
        self.requested_model, self.status, self.id, self.call_id = call.requested_model, status, None, call.call_id
        self.attempt, self.retried, self.latency_ms = call.attempt or 1, False, call.elapsed_ms()
        self.prompt_tokens, self.output_tokens = usage.prompt_tokens, usage.output_tokens
        self.usage_source = usage.source
        self.total_usd = normalize(cost.total_usd) if cost is not None else None
        self.saved_usd = normalize(saved) if saved else Decimal(0)
        self.cache_status, self.rule, self.deployment = call.cache_status, call.rule, call.deployment
        self.fallback_from = call.fallback_from
        self.error_class = type(error).__name__ if error is not None else None
