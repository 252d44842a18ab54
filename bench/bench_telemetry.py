"""What OpenTelemetry tracing (``telemetry = "otel"``) adds to a call, against the raw SDK
call to FakeProvider on loopback (in its own process), in the same run.

Four calls interleaved in a random order each round: the raw openai SDK, unillm with
telemetry off, unillm with telemetry on (the real OpenTelemetry SDK: a TracerProvider with a
BatchSpanProcessor and a MeterProvider with a periodic reader at its default interval, both
exporting to nothing, so what is measured is unillm's spans and metrics, not an exporter's
network), and the floor: the raw SDK call inside a bare span of the same SDK with the name
and attributes of a span the traced client made (taken from the exporter after the warm-up).
``floor - raw`` (paired) is what the OpenTelemetry SDK itself takes for one such span, the
part of tracing's cost no code of unillm's can remove; tracing minus it is unillm's own
(building the attributes, the ``traceparent`` header, the metrics, the call id). Then the metrics work a collection does for those calls (histograms are recorded
there, off the call path: `unillm.telemetry.meters`), per call. Reports medians,
each ratio to raw, and tracing's cost as ``(on - off) / raw``, in wall time and in the
calling thread's CPU time (steadier on a shared machine); then the cost of the hooks
when everything is off (no telemetry, no callbacks, no JSON logs), per call.

Tracing's cost is given two ways: the difference of the two medians, and the median of the
per-round differences (on minus off in the same round, a few milliseconds apart). On a
loaded machine the medians of on and off each move by hundreds of µs from run to run, so
their difference is mostly noise; the paired one cancels what a round's load adds to both
(two identical "off" clients differ by under 10 µs that way). The bar uses the paired one.
The raw call's wall time itself depends on the machine's state more than on load: with idle
cores between calls, waking the server and the client costs milliseconds (raw ~4-8 ms);
with every core busy it is close to its CPU time (~2 ms). So the paired CPU cost is also
given against the raw call's own CPU time, which does not move with that.
Usage: python bench/bench_telemetry.py [N] [ledger]   (ledger: "off" (default) or "sqlite")
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence

import openai
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from unillm import Client

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from bench_overhead import MESSAGES, _server


class _Drop(SpanExporter):
    """Exports nowhere; keeps the name and attributes of the last span unillm made (the floor's)."""

    last: tuple[str, dict[str, object]] | None = None

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:  # type: ignore[override]
        for span in spans:
            if span.instrumentation_scope is not None and span.instrumentation_scope.name == "unillm":
                self.last = span.name, dict(span.attributes or {})
        return SpanExportResult.SUCCESS


class _DropMetrics(MetricExporter):
    def export(self, metrics_data: object, timeout_millis: float = 10_000, **kw: object) -> MetricExportResult:  # type: ignore[override]
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kw: object) -> None:
        return None


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    ledger_kind = sys.argv[2] if len(sys.argv) > 2 else "off"
    tp = TracerProvider()
    dropped = _Drop()
    tp.add_span_processor(BatchSpanProcessor(dropped))
    trace.set_tracer_provider(tp)
    mp = MeterProvider(metric_readers=[PeriodicExportingMetricReader(_DropMetrics())])
    metrics.set_meter_provider(mp)
    kw = {"max_tokens": 20}
    with tempfile.TemporaryDirectory() as d, _server() as url:
        def ledger(name: str) -> str:
            return "off" if ledger_kind == "off" else f"sqlite:///{d}/{name}.db"
        providers = {"openai": {"base_url": url + "/v1", "api_key": "k"}}
        raw = openai.OpenAI(api_key="k", base_url=url + "/v1", max_retries=0)
        off = Client(providers=providers, ledger=ledger("off"))
        on = Client(providers=providers, ledger=ledger("on"), telemetry="otel")
        calls = {
            "raw": lambda: raw.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **kw),
            "off": lambda: off.chat(model="gpt-4o-mini", messages=MESSAGES, **kw),
            "on": lambda: on.chat(model="gpt-4o-mini", messages=MESSAGES, **kw),
        }
        for _ in range(50):
            for fn in calls.values():
                fn()
        tp.force_flush()
        assert dropped.last is not None
        span_name, span_attrs = dropped.last  # what a traced call's span carries, to the floor's span
        bare = trace.get_tracer("bench")

        def floor() -> object:
            span = bare.start_span(span_name, kind=trace.SpanKind.CLIENT, attributes=span_attrs)
            try:
                return calls["raw"]()
            finally:
                span.end()
        calls["floor"] = floor
        floor()
        times: dict[str, list[float]] = {name: [] for name in calls}
        cpu: dict[str, list[float]] = {name: [] for name in calls}
        order = list(calls)
        for _ in range(n):
            random.shuffle(order)
            for name in order:
                c0, t0 = time.thread_time(), time.perf_counter()
                calls[name]()
                times[name].append(time.perf_counter() - t0)
                cpu[name].append(time.thread_time() - c0)
        obs = off._obs
        from unillm.telemetry.meters import meters
        waiting = len(meters()._waiting)
        c0 = time.thread_time()
        mp.force_flush()
        deferred = (time.thread_time() - c0) / max(waiting, 1) * 1e6
    med = {name: statistics.median(t) * 1e6 for name, t in times.items()}
    print(f"ledger {ledger_kind}, {n} interleaved rounds (medians)")
    for name in ("raw", "off", "on", "floor"):
        print(f"  {name:5} {med[name]:8.0f} µs   ratio to raw {med[name] / med['raw']:6.3f}")
    print(f"  tracing on adds {med['on'] - med['off']:6.0f} µs a call = "
          f"{(med['on'] - med['off']) / med['raw'] * 100:5.2f}% of the raw SDK call (difference of medians)")
    paired = statistics.median(a - b for a, b in zip(times["on"], times["off"])) * 1e6
    cpaired = statistics.median(a - b for a, b in zip(cpu["on"], cpu["off"])) * 1e6
    print(f"  paired (median of per-round on - off): wall {paired:6.0f} µs = {paired / med['raw'] * 100:5.2f}%, "
          f"calling thread's CPU {cpaired:6.0f} µs = {cpaired / med['raw'] * 100:5.2f}% of the raw call "
          f"({cpaired / statistics.median(cpu['raw']) / 1e4:5.2f}% of the raw call's CPU)")
    fpaired = statistics.median(a - b for a, b in zip(times["floor"], times["raw"])) * 1e6
    fcpaired = statistics.median(a - b for a, b in zip(cpu["floor"], cpu["raw"])) * 1e6
    print(f"  the floor, the OpenTelemetry SDK's own share (the raw call in a bare span with the same "
          f"{len(span_attrs)} attributes; paired floor - raw): wall {fpaired:6.0f} µs = "
          f"{fpaired / med['raw'] * 100:5.2f}%, CPU {fcpaired:6.0f} µs = {fcpaired / med['raw'] * 100:5.2f}% of the "
          f"raw call ({fcpaired / statistics.median(cpu['raw']) / 1e4:5.2f}% of its CPU); unillm's own above it: "
          f"CPU {cpaired - fcpaired:6.0f} µs = {(cpaired - fcpaired) / med['raw'] * 100:5.2f}%")
    # the calling thread's CPU time: what tracing costs the caller, robust to a busy machine
    cmed = {name: statistics.median(t) * 1e6 for name, t in cpu.items()}
    print(f"  CPU of the calling thread: raw {cmed['raw']:6.0f} µs, off {cmed['off']:6.0f} µs, "
          f"on {cmed['on']:6.0f} µs; tracing {cmed['on'] - cmed['off']:5.0f} µs = "
          f"{(cmed['on'] - cmed['off']) / med['raw'] * 100:5.2f}% of the raw call's wall time")
    print(f"  at the next metrics collection (the reader's thread): {deferred:5.0f} µs CPU a call "
          f"({waiting} calls waiting) = {deferred / med['raw'] * 100:5.2f}% of the raw call")
    # everything off: the client's hooks on a call answered at its first attempt are these (the
    # attempt's `tracer` check, `sent(None)` after it, then `rows` and `tracer` in `_finish`)
    k = 1_000_000
    t0 = time.perf_counter()
    for _ in range(k):
        _ = obs.tracer
        obs.sent(None)
        _ = obs.rows
        _ = obs.tracer
    hooks_ns = (time.perf_counter() - t0) / k * 1e9
    print(f"  telemetry off: the hooks cost {hooks_ns:5.0f} ns a call = "
          f"{hooks_ns / (med['raw'] * 1e3) * 100:6.4f}% of the raw SDK call")


if __name__ == "__main__":
    main()
