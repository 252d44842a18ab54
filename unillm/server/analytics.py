"""``GET /v1/analytics`` and ``GET /v1/budgets``: the ledger, summarized for people and charts.

`build` is what the endpoint, the dashboard and ``unillm report`` all draw from:
totals, spend over time, spend by model/provider/user/project, top requests,
recent calls, cache hit rate and money saved by the cache and by rules. Money
stays Decimal (exact text in JSON). An admin key sees everything; any other key
sees only the calls made with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .. import errors
from ..ledger.when import parse_when
from .wire import HTTPError, json_response

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

log = logging.getLogger("unillm.server")

#: query parameters that filter directly (tag or column names)
FILTERS = ("model", "provider", "user", "project", "status", "key_id", "section")
ZERO = Decimal(0)


def parse_range(since: str | None, until: str | None,
                now: datetime | None = None) -> tuple[datetime | None, datetime | None]:
    """``since``/``until`` text (``7d``, ISO dates) -> aware datetimes; default: the last 30 days."""
    now = now or datetime.now(timezone.utc)
    start = parse_when(since or "30d", param="since", now=now) if since != "all" else None
    end = parse_when(until, param="until", now=now) if until else None
    return start, end


def filters_from(params: Mapping[str, str], pairs: list[str]) -> dict[str, Any]:
    """Filters from ``?model=..&user=..`` and repeated ``?where=KEY=VALUE``."""
    where: dict[str, Any] = {k: params[k] for k in FILTERS if params.get(k)}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise HTTPError(400, f"where={pair!r}: expected KEY=VALUE", param="where")
        where[name.strip()] = value
    return where


def bucket_for(since: datetime | None, until: datetime | None, now: datetime | None = None) -> str:
    """``hour`` for ranges up to two days, else ``day``."""
    if since is None:
        return "day"
    span = (until or now or datetime.now(timezone.utc)) - since
    return "hour" if span <= timedelta(days=2) else "day"


def _rows(ledger: Any, by: list[str], since: Any, until: Any, where: Mapping[str, Any]) -> list[dict[str, Any]]:
    rows = ledger.summary(by=by, since=since, until=until, where=where or None)
    return sorted(rows, key=lambda r: (-(r["cost_usd"] or ZERO), -r["calls"]))


def _by_rule(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per rule: every call it routed, but only the money the rule itself saved (a cache
    hit on a routed call saved money too, and that belongs to the cache)."""
    out: dict[str, dict[str, Any]] = {}
    for row in rows:
        if not row["rule"]:
            continue
        slim = _slim(row, ["rule"])
        if row["saved_reason"] != "rule":
            slim["saved_usd"] = ZERO
        acc = out.get(row["rule"])
        if acc is None:
            out[row["rule"]] = slim
            continue
        for key in ("calls", "errors", "cache_hits", "tokens", "cost_usd", "saved_usd"):
            acc[key] += slim[key]
        acc["p50_latency_ms"] = acc["p95_latency_ms"] = None  # percentiles do not add up
    return sorted(out.values(), key=lambda r: r["saved_usd"], reverse=True)


def _slim(row: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    tokens = sum(row[t] for t in ("input_tokens", "cache_read_tokens", "cache_write_tokens",
                                  "output_tokens"))
    out = {k: row[k] for k in keys}
    out.update(calls=row["calls"], errors=row["errors"], cache_hits=row["cache_hits"], tokens=tokens,
               cost_usd=row["cost_usd"] or ZERO, saved_usd=row["saved_usd"] or ZERO,
               p50_latency_ms=row["p50_latency_ms"], p95_latency_ms=row["p95_latency_ms"])
    return out


def _records(store: Any, since: Any, until: Any, where: Mapping[str, Any], order: str,
             limit: int) -> list[dict[str, Any]]:
    """The dearest or newest records, with the same filters as the summary."""
    return [_call(r) for r in store.ranked(order, since, until, where or None, limit)]


def _call(rec: Any) -> dict[str, Any]:
    return {"id": rec.id, "started_at": rec.started_at, "provider": rec.provider, "model": rec.model,
            "status": rec.status, "user": rec.tags.get("user"), "project": rec.tags.get("project"),
            "tokens": rec.prompt_tokens + rec.output_tokens, "cost_usd": rec.total_usd,
            "saved_usd": rec.saved_usd, "latency_ms": rec.latency_ms, "rule": rec.rule,
            "stream": rec.stream}


def build(client: Any, since: datetime | None = None, until: datetime | None = None,
          where: Mapping[str, Any] | None = None, *, bucket: str | None = None,
          top: int = 10, recent: int = 25) -> dict[str, Any]:
    """Everything the dashboard shows, as one dict (blocking: run it in a thread)."""
    ledger, where = client.ledger, dict(where or {})
    bucket = bucket or bucket_for(since, until)
    total_rows = ledger.summary(since=since, until=until, where=where or None)
    totals = _slim(total_rows[0], []) if total_rows else _slim(_empty(), [])
    series = [_slim(r, [bucket]) for r in ledger.summary(by=[bucket], since=since, until=until,
                                                         where=where or None)]
    by_status = {r["status"]: r for r in _rows(ledger, ["status"], since, until, where)}
    by_reason = {r["saved_reason"]: r for r in _rows(ledger, ["saved_reason"], since, until, where)}
    hits = by_status.get("cache_hit", {}).get("calls", 0)
    answered = sum(r["calls"] for s, r in by_status.items() if s in ("ok", "cache_hit", "unpriced", "partial"))
    cache_saved = by_status.get("cache_hit", {}).get("saved_usd") or ZERO
    return {
        "range": {"since": since, "until": until, "bucket": bucket},
        "filters": where,
        "totals": totals,
        "series": fill_series([{"t": r[bucket], **{k: r[k] for k in ("calls", "tokens", "cost_usd", "errors")}}
                               for r in series], bucket, since, until),
        "by_model": [_slim(r, ["provider", "model"]) for r in _rows(ledger, ["provider", "model"], since, until, where)],
        "by_provider": [_slim(r, ["provider"]) for r in _rows(ledger, ["provider"], since, until, where)],
        "by_user": [_slim(r, ["user"]) for r in _rows(ledger, ["user"], since, until, where)],
        "by_project": [_slim(r, ["project"]) for r in _rows(ledger, ["project"], since, until, where)],
        "by_status": {s: r["calls"] for s, r in by_status.items()},
        "cache": {"hits": hits, "answered": answered,
                  "hit_rate": (Decimal(hits) / answered).quantize(Decimal("0.0001")) if answered else ZERO,
                  "saved_usd": cache_saved},
        "rules": {"saved_usd": (by_reason.get("rule") or {}).get("saved_usd") or ZERO,
                  "calls": (by_reason.get("rule") or {}).get("calls", 0),
                  "by_rule": _by_rule(_rows(ledger, ["rule", "saved_reason"], since, until, where))},
        "by_section": _sections(ledger, since, until, where),
        "top_requests": _records(ledger.store, since, until, where, "cost", top),
        "recent": _records(ledger.store, since, until, where, "recent", recent),
    }


#: more distinct sections than this: the dashboard lists them flat (a rolled-up tree is a
#: query per node)
MAX_TREE = 200


def _sections(ledger: Any, since: datetime | None, until: datetime | None,
              where: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Spend per section as a tree: each section counts its subsections (no section: left out)."""
    flat = [r for r in ledger.summary(by=["section"], since=since, until=until, where=where or None)
            if r["section"] is not None]
    rows = flat if len(flat) > MAX_TREE else [
        r for r in ledger.summary(by=["section"], since=since, until=until, where=where or None, rollup=True)
        if r["section"] is not None]
    return [_slim(r, ["section"]) for r in rows]


def fill_series(points: list[dict[str, Any]], bucket: str, since: datetime | None,
                until: datetime | None, limit: int = 400) -> list[dict[str, Any]]:
    """Every hour/day bucket of the range, zero where nothing was spent (a real time axis)."""
    if bucket not in ("hour", "day") or (since is None and not points):
        return points
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    width = 13 if bucket == "hour" else 10
    fmt = "%Y-%m-%dT%H" if bucket == "hour" else "%Y-%m-%d"
    start = since.astimezone(timezone.utc) if since else datetime.fromisoformat(points[0]["t"][:10]).replace(tzinfo=timezone.utc)
    end = (until or datetime.now(timezone.utc)).astimezone(timezone.utc)
    if points and points[-1]["t"] > end.strftime(fmt):
        end = datetime.strptime(points[-1]["t"], fmt).replace(tzinfo=timezone.utc)
    if (end - start) / step > limit:
        return points
    have = {p["t"][:width]: p for p in points}
    out, t = [], datetime.strptime(start.strftime(fmt), fmt).replace(tzinfo=timezone.utc)
    while t <= end:
        label = t.strftime(fmt)
        out.append(have.get(label) or {"t": label, "calls": 0, "tokens": 0, "cost_usd": ZERO, "errors": 0})
        t += step
    return out


def _empty() -> dict[str, Any]:
    zero = {k: 0 for k in ("calls", "errors", "cache_hits", "input_tokens", "cache_read_tokens",
                           "cache_write_tokens", "output_tokens")}
    return {**zero, "cost_usd": ZERO, "saved_usd": ZERO, "p50_latency_ms": None, "p95_latency_ms": None}


def budget_status(client: Any) -> list[dict[str, Any]]:
    """Every budget of the client (the keys' budgets included: the gateway registers them), each
    over its period in the configured timezone (`BudgetSpec.window`)."""
    return list(client.budgets.status())


async def endpoint(request: Request) -> Response:
    gw = request.app.state.gateway
    key = gw.authenticate(request)
    q = request.query_params
    since, until = parse_range(q.get("since"), q.get("until"))
    where = filters_from(q, q.getlist("where"))
    if not key.admin:
        where["key_id"] = key.id
    by = q.get("by")

    def load() -> dict[str, Any]:
        data = build(gw.client, since, until, where, bucket=q.get("bucket") or None)
        if by:
            data["groups"] = [{**r} for r in gw.client.ledger.summary(by=by, since=since, until=until,
                                                                      where=where or None)]
        return data

    return json_response(await asyncio.to_thread(_reading, load))


def _reading(fn: Any) -> Any:
    """Run a ledger read; its failure is a 503 that says the ledger could not be *read*."""
    try:
        return fn()
    except errors.LedgerError as exc:
        log.error("analytics: %s", exc)  # the detail (file, driver message) is for the operator
        raise HTTPError(503, "could not read the ledger; the gateway's log has the detail",
                        type="server_error", code="ledger_unavailable") from None


async def budgets(request: Request) -> Response:
    gw = request.app.state.gateway
    key = gw.authenticate(request)

    def load() -> list[dict[str, Any]]:
        rows = budget_status(gw.client)
        if not key.admin:
            rows = [r for r in rows if r.get("scope", {}).get("key_id") == key.id]
        return rows

    return json_response({"object": "list", "data": await asyncio.to_thread(_reading, load)})
