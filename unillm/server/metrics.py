"""Prometheus ``GET /metrics`` for the gateway (``[server.metrics]``; ``pip install 'unillm[metrics]'``).

Off by default: then there is no route and nothing here is imported or counted. On, the
gateway counts each chat request when it ends (`Metrics.finished` / `Metrics.failed`),
each rate-limit refusal and each invalid key; budget gauges are read from the ledger's
database at scrape time, so every worker reports the same figures.

Access: a scraper from a network in ``allow_from`` needs no key; any other must send an
admin key (``Authorization: Bearer ...``, Prometheus' ``authorization`` setting). The
client address is the one uvicorn reports: the TCP peer's, or ``X-Forwarded-For`` when
the peer is a proxy uvicorn trusts (``FORWARDED_ALLOW_IPS``, default 127.0.0.1).

Under ``unillm serve --workers N`` every worker writes its counts to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode; `serve` makes a fresh
directory when none is set) and a scrape, whichever worker answers it, sums them all.
Money is exact until exposition, where Prometheus' float64 takes over.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .. import errors

__all__ = ["Metrics", "endpoint", "shared_between_workers"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LATENCY = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
_TTFT = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
_TOKEN_BUCKETS = ("input", "cache_read", "cache_write", "output", "reasoning")
_CALL = ["model", "provider", "key"]
_LIMITS = {"requests per minute": "rpm", "tokens per minute": "tpm", "concurrent requests": "concurrency"}


def _prometheus() -> Any:
    try:
        import prometheus_client
    except ImportError:
        raise errors.MissingDependencyError("prometheus-client", "metrics") from None
    return prometheus_client


class Metrics:
    """The gateway's Prometheus instruments (one set per process)."""

    def __init__(self, settings: Any, client: Any) -> None:
        pc = _prometheus()
        self._pc, self._client = pc, client
        self.networks = [ipaddress.ip_network(n, strict=False) for n in settings.allow_from]
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # multiprocess: values live in the shared directory, a scrape collects them anew
        reg = self.registry = None if self.multiprocess else pc.CollectorRegistry()
        self.requests = pc.Counter("unillm_requests", "Chat requests answered, by outcome",
                                   [*_CALL, "status"], registry=reg)
        self.errors = pc.Counter("unillm_request_errors", "Chat requests that failed, by error type",
                                 [*_CALL, "error"], registry=reg)
        self.tokens = pc.Counter("unillm_tokens", "Tokens used, by bucket", [*_CALL, "type"], registry=reg)
        self.cost = pc.Counter("unillm_cost_usd", "Money spent (USD)", _CALL, registry=reg)
        self.cache_hits = pc.Counter("unillm_cache_hits", "Answers served from the response cache",
                                     _CALL, registry=reg)
        self.cache_saved = pc.Counter("unillm_cache_saved_usd", "What cache hits would have cost (USD, at "
                                      "today's price)", _CALL, registry=reg)
        self.latency = pc.Histogram("unillm_request_duration_seconds", "Time to answer a chat request "
                                    "(streams: to their end)", ["model", "provider"], buckets=_LATENCY,
                                    registry=reg)
        self.ttft = pc.Histogram("unillm_time_to_first_token_seconds", "Time to a stream's first chunk",
                                 ["model", "provider"], buckets=_TTFT, registry=reg)
        self.refusals = pc.Counter("unillm_rate_limit_refusals", "Requests refused by a rate limit",
                                   ["key", "limit"], registry=reg)
        self.invalid_keys = pc.Counter("unillm_invalid_api_keys", "Requests with an invalid or revoked key",
                                       registry=reg)
        if reg is not None:
            reg.register(_Budgets(client, pc))

    # ── counting (called by the gateway only when metrics are on) ──
    def finished(self, key: Any, resp: Any, seconds: float) -> None:
        labels = (resp.model, resp.provider, key.id)
        status = "cache_hit" if resp.cached else _status(resp)
        self.requests.labels(*labels, status).inc()
        self.latency.labels(resp.model, resp.provider).observe(seconds)
        usage = resp.usage
        if resp.cached:
            self.cache_hits.labels(*labels).inc()
            saved = self._saved(resp)
            if saved:
                self.cache_saved.labels(*labels).inc(float(saved))
            return
        if usage is not None:
            for bucket in _TOKEN_BUCKETS:
                n = getattr(usage, f"{bucket}_tokens")
                if n:
                    self.tokens.labels(*labels, bucket).inc(n)
        if resp.cost is not None and resp.cost.total_usd:
            self.cost.labels(*labels).inc(float(resp.cost.total_usd))

    def first_token(self, model: str, provider: str, seconds: float) -> None:
        self.ttft.labels(model, provider).observe(seconds)

    def failed(self, key: Any, model: str, exc: BaseException) -> None:
        """A request that raised. The model is the caller's, so it is a label only when the
        price book knows it (else ``other``): callers cannot mint series at will."""
        try:
            ref = self._client.resolve(model)
            provider = ref.provider
            name = ref.model if self._client.pricebook.find(ref.provider, ref.model) is not None else "other"
        except errors.UnillmError:
            provider, name = "", "other"
        self.requests.labels(name, provider, key.id, "error").inc()
        self.errors.labels(name, provider, key.id, type(exc).__name__).inc()

    def refused(self, key: Any, limit: str) -> None:
        self.refusals.labels(key.id, _LIMITS.get(limit, limit)).inc()

    def _saved(self, resp: Any) -> Decimal | None:
        """What the hit's usage costs at today's price of the model that answered it."""
        if resp.usage is None:
            return None
        try:
            price = self._client.pricebook.price(resp.provider, getattr(resp, "sent_model", None) or resp.model)
        except errors.UnillmError:
            return None
        total: Decimal = price.cost(resp.usage).total_usd
        return total

    # ── scraping ──
    def allows(self, host: str | None) -> bool:
        """Whether a scraper at ``host`` may read without a key."""
        if host is None or not self.networks:
            return False
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(addr in net for net in self.networks)

    def exposition(self) -> bytes:
        """The text format: this process's counts, or every worker's under multiprocess."""
        pc = self._pc
        if self.registry is not None:
            out: bytes = pc.generate_latest(self.registry)
            return out
        from prometheus_client import multiprocess
        reg = pc.CollectorRegistry()
        multiprocess.MultiProcessCollector(reg)  # type: ignore[no-untyped-call]
        reg.register(_Budgets(self._client, pc))
        out = pc.generate_latest(reg)
        return out


def _status(resp: Any) -> str:
    """ok, partial (a stream cut short) or unpriced: the ledger row's status."""
    if not hasattr(resp, "choices"):  # an EmbeddingResponse: complete once it is returned
        return "ok" if resp.cost is not None else "unpriced"
    finish = resp.choices[0].finish_reason if resp.choices else None
    if finish is None:
        return "partial"
    return "ok" if resp.cost is not None else "unpriced"


class _Budgets:
    """Budget (and deployment health) gauges read from the ledger's database when scraped
    (shared by every worker)."""

    def __init__(self, client: Any, pc: Any) -> None:
        self._client, self._pc = client, pc

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily
        labels = ["budget", "scope", "period"]
        used = GaugeMetricFamily("unillm_budget_used_ratio", "Budget used: spent and held over limit",
                                 labels=labels)
        spent = GaugeMetricFamily("unillm_budget_spent_usd", "Budget spent this period (USD)", labels=labels)
        held = GaugeMetricFamily("unillm_budget_reserved_usd", "Budget held by calls in flight (USD)",
                                 labels=labels)
        limit = GaugeMetricFamily("unillm_budget_limit_usd", "Budget limit (USD)", labels=labels)
        budgets = self._client.budgets
        for row in budgets.status() if budgets else ():
            scope = ",".join(f"{k}={v}" for k, v in sorted((row.get("scope") or {}).items()))
            values = [row["budget"], scope, row["period"]]
            used.add_metric(values, float(row["used"]))
            spent.add_metric(values, float(row["spent_usd"]))
            held.add_metric(values, float(row["reserved_usd"]))
            if row.get("limit_usd") is not None:
                limit.add_metric(values, float(row["limit_usd"]))
        yield from (used, spent, held, limit)
        yield from _deployments(self._client.route_status() if hasattr(self._client, "route_status") else [])


def _deployments(rows: list[dict[str, Any]]) -> Iterator[Any]:
    """Deployment health from the routing state (shared by every worker): 1 healthy, 0.5
    half-open (one probe allowed), 0 cooling; in flight, RPM/TPM used, latency, errors."""
    from prometheus_client.core import GaugeMetricFamily
    labels = ["deployment", "model", "provider"]
    families = {
        "up": GaugeMetricFamily("unillm_deployment_up", "1 healthy, 0.5 half-open, 0 cooling down", labels=labels),
        "in_flight": GaugeMetricFamily("unillm_deployment_in_flight", "Calls in flight", labels=labels),
        "rpm_used": GaugeMetricFamily("unillm_deployment_rpm_used", "Requests in the last minute", labels=labels),
        "tpm_used": GaugeMetricFamily("unillm_deployment_tpm_used", "Tokens in the last minute", labels=labels),
        "latency_ewma_ms": GaugeMetricFamily("unillm_deployment_latency_ewma_ms", "Latency EWMA (ms)",
                                             labels=labels),
        "error_rate": GaugeMetricFamily("unillm_deployment_error_ratio", "Failed over all attempts", labels=labels),
    }
    for row in rows:
        values = [row["deployment"], row["model"], row["provider"]]
        families["up"].add_metric(values, {"healthy": 1.0, "half-open": 0.5}.get(row["state"], 0.0))
        for key in ("in_flight", "rpm_used", "tpm_used", "latency_ewma_ms", "error_rate"):
            if row.get(key) is not None:
                families[key].add_metric(values, float(row[key]))
    yield from families.values()


async def endpoint(request: Request) -> Response:
    """``GET /metrics``: the scrape (a network in ``allow_from``, else an admin key)."""
    gw = request.app.state.gateway
    metrics: Metrics = gw.metrics
    if not metrics.allows(request.client.host if request.client else None):
        gw.authenticate(request, admin=True)
    body = await asyncio.to_thread(metrics.exposition)
    return Response(body, media_type=metrics._pc.CONTENT_TYPE_LATEST)


@contextmanager
def shared_between_workers(server: Any) -> Iterator[None]:
    """With metrics on and no ``PROMETHEUS_MULTIPROC_DIR`` set, a fresh one for the workers
    about to be started (they inherit the environment), removed afterwards."""
    if not server.metrics.enabled or os.environ.get(MULTIPROC_ENV):
        yield
        return
    path = tempfile.mkdtemp(prefix="unillm-metrics-")
    os.environ[MULTIPROC_ENV] = path
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(path, ignore_errors=True)
