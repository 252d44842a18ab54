"""The OpenTelemetry metrics of every traced call, one set per process.

Histograms ``gen_ai.client.token.usage`` ({token}, ``gen_ai.token.type`` input / output)
and ``gen_ai.client.operation.duration`` (s), as the GenAI conventions name them; counters
``unillm.client.cost`` (USD) and ``unillm.client.calls`` (by ``unillm.status``). Attributes:
``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.model``,
``gen_ai.response.model`` and, on failures, ``error.type``.

Off the call's path: the two counters are summed here (cost as an exact Decimal) and
reported as cumulative observable counters when the application's metric reader collects;
the histograms' measurements wait in a queue and are recorded into the SDK by that same
collection (on the reader's thread, before it reads them: what it exports is what inline
recording would have given). A call pays a queue append and a dict update, not five trips
through the SDK. When nothing collects (no reader), the queue stops at `WAITING` and calls
record their measurements at once. The instruments are created once per process: the SDK
hands a second client the same instruments, and would drop its callbacks.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from opentelemetry import context, metrics

#: unillm's provider names as the conventions' ``gen_ai.provider.name`` values
PROVIDER_NAMES = {"google": "gcp.gemini", "vertex": "gcp.vertex_ai", "bedrock": "aws.bedrock",
                  "azure": "azure.ai.openai", "mistral": "mistral_ai", "xai": "x_ai"}

_TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864]
_SECOND_BUCKETS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92]

#: histogram measurements waiting for a collection, at most (then they are recorded at once)
WAITING = 10_000

Key = tuple[str, str, str, "str | None"]  # provider, request model, response model, error type


class _Attrs:
    """The attribute dicts of one key, built once (never mutated: the SDK may keep them), and
    its counters' running sums (under `Meters`' lock): cost (None until a call cost something)
    and calls by status."""

    __slots__ = ("base", "tokens_in", "tokens_out", "by_status", "cost", "calls")

    def __init__(self, key: Key) -> None:
        provider, requested, answered, error = key
        self.base: dict[str, Any] = {"gen_ai.operation.name": "chat",
                                     "gen_ai.provider.name": PROVIDER_NAMES.get(provider, provider),
                                     "gen_ai.request.model": requested, "gen_ai.response.model": answered}
        if error is not None:
            self.base["error.type"] = error
        self.tokens_in = {**self.base, "gen_ai.token.type": "input"}
        self.tokens_out = {**self.base, "gen_ai.token.type": "output"}
        self.by_status: dict[str, dict[str, Any]] = {}
        self.cost: Decimal | None = None
        self.calls: dict[str, int] = {}

    def status(self, status: str) -> dict[str, Any]:
        attrs = self.by_status.get(status)
        if attrs is None:
            attrs = self.by_status[status] = {**self.base, "unillm.status": status}
        return attrs


class Meters:
    """The instruments and the counters' running sums (see the module docstring)."""

    def __init__(self) -> None:
        from .. import __version__
        meter = metrics.get_meter("unillm", __version__)
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}", description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS)
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s", description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=_SECOND_BUCKETS)
        meter.create_observable_counter("unillm.client.cost", callbacks=[self._observe_cost], unit="USD",
                                        description="Cost of calls")
        meter.create_observable_counter("unillm.client.calls", callbacks=[self._observe_calls], unit="{call}",
                                        description="Calls by status")
        self._waiting: deque[tuple[_Attrs, float | None, int, int, Any]] = deque()
        self._attrs: dict[Key, _Attrs] = {}
        self._lock = threading.Lock()

    def record(self, rec: Any) -> None:
        """The measurements of one ledger row."""
        key: Key = (rec.provider, rec.sent_model or rec.model, rec.model, rec.error_class)
        attrs = self._attrs.get(key)
        if attrs is None:
            with self._lock:
                attrs = self._attrs.setdefault(key, _Attrs(key))
        seconds = rec.latency_ms / 1000.0 if rec.latency_ms is not None and rec.status != "cache_hit" else None
        measured = (attrs, seconds, rec.prompt_tokens, rec.output_tokens, context.get_current())
        if len(self._waiting) < WAITING:
            self._waiting.append(measured)
        else:
            self._record(measured)
        cost, status, calls = rec.total_usd, rec.status, attrs.calls
        with self._lock:
            if cost:
                attrs.cost = cost if attrs.cost is None else attrs.cost + cost
            calls[status] = calls.get(status, 0) + 1

    def _record(self, measured: tuple[_Attrs, float | None, int, int, Any]) -> None:
        attrs, seconds, tokens_in, tokens_out, ctx = measured
        if seconds is not None:
            self.duration.record(seconds, attrs.base, context=ctx)
        if tokens_in or tokens_out:
            self.tokens.record(tokens_in, attrs.tokens_in, context=ctx)
            self.tokens.record(tokens_out, attrs.tokens_out, context=ctx)

    def drain(self) -> None:
        """Record the waiting histogram measurements into the SDK (a collection calls this)."""
        waiting = self._waiting
        while True:
            try:
                measured = waiting.popleft()
            except IndexError:
                return
            self._record(measured)

    def _observe_cost(self, options: Any) -> Iterable[metrics.Observation]:
        self.drain()  # the first of the instruments a collection calls back
        with self._lock:
            sums = [(attrs.base, attrs.cost) for attrs in self._attrs.values() if attrs.cost is not None]
        return [metrics.Observation(float(total), base) for base, total in sums]

    def _observe_calls(self, options: Any) -> Iterable[metrics.Observation]:
        self.drain()
        with self._lock:
            counts = [(attrs, status, n) for attrs in self._attrs.values() for status, n in attrs.calls.items()]
        return [metrics.Observation(n, attrs.status(status)) for attrs, status, n in counts]


_meters: Meters | None = None
_made = threading.Lock()


def meters() -> Meters:
    """This process's `Meters` (made at the first traced client)."""
    global _meters
    if _meters is None:
        with _made:
            if _meters is None:
                _meters = Meters()
    return _meters
