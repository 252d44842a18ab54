"""``GET /admin/health``: what operators alert on — ledger and cache latency, the ledger's
pool, this worker's request queue, memory, and every worker's calls over the last minutes."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from .wire import json_response

if TYPE_CHECKING:
    from .app import Gateway

#: the window error rate and latency percentiles are reported over
HEALTH_WINDOW = timedelta(minutes=5)


def _timed(fn: Callable[[], Any]) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        fn()
    except Exception as exc:  # noqa: BLE001 - report, never raise, from a health probe
        return {"ok": False, "error": type(exc).__name__}
    return {"ok": True, "latency_ms": round((time.perf_counter() - start) * 1000, 3)}


def _rss_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _pool_use(store: Any) -> dict[str, Any]:
    """The ledger's threads (and PostgreSQL connections) in use and waited for."""
    io = getattr(store, "io", None)
    use: dict[str, Any] = {} if io is None else {"threads": io.threads, "max_threads": io.workers,
                                                 "queued": io.queued}
    stats = getattr(store, "pool_stats", None)
    return use | ({} if stats is None else stats())


def _queue(gw: Gateway) -> dict[str, Any] | None:
    """The request queue in front of the gateway (`capacity.Capacity`)."""
    cap = gw.capacity
    if cap is None:
        return None
    return {"active": cap.active, "queued": cap.queued, "max_concurrent": cap.max_concurrent,
            "max_queued": cap.max_queued}


def _health(gw: Gateway) -> dict[str, Any]:
    client = gw.client
    ledger = _timed(lambda: client.ledger.store.last_cursor())
    cache = getattr(client, "cache", None)
    cache_probe = ({"ok": None, "detail": "the client has no response cache"} if cache is None
                   else {**_timed(lambda: cache.get("unillm-health-probe")), "backend": type(cache).__name__})
    since = datetime.now(timezone.utc) - HEALTH_WINDOW
    calls: dict[str, Any] = {"window_seconds": int(HEALTH_WINDOW.total_seconds())}
    try:
        recs = [r for r in client.ledger.store.records(since=since) if r.status != "in_flight"]
        latencies = [float(r.latency_ms) for r in recs if r.latency_ms is not None and r.status == "ok"]
        failed = sum(1 for r in recs if r.status not in ("ok", "cached"))
        calls |= {"count": len(recs), "errors": failed,
                  "error_rate": round(failed / len(recs), 4) if recs else None,
                  "p50_ms": _percentile(latencies, 0.50), "p95_ms": _percentile(latencies, 0.95)}
    except Exception as exc:  # noqa: BLE001 - report, never raise, from a health probe
        calls |= {"error": type(exc).__name__}
    ok = ledger["ok"] and cache_probe["ok"] is not False
    return {"status": "ok" if ok else "degraded", "pid": os.getpid(), "ledger": ledger, "cache": cache_probe,
            "memory": {"rss_bytes": _rss_bytes()}, "calls": calls,
            "pool": _pool_use(client.ledger.store), "queue": _queue(gw),
            "budgets": len(client.budgets.specs), "rules": len(client.rules or ())}


async def endpoint(request: Request) -> Response:
    """``GET /admin/health``: what operators alert on (this process, and every process's calls)."""
    gw: Gateway = request.app.state.gateway
    gw.authenticate(request, admin=True)
    report = await asyncio.to_thread(_health, gw)
    return json_response(report, 200 if report["status"] == "ok" else 503)
