"""``POST /v1/usage`` and ``/v1/usage/batch``: record usage that other systems report.

A body is validated field by field; every problem comes back at once as a 422
``{"error": {..., "code": "validation_error", "errors": [{"field", "message"}]}}``.
A batch is all or nothing: it is validated and priced in full, then written in
one transaction. The key's tags (``key_id``, and ``user``/``project`` when the
key has them) override what the body says, so a key records only for its tenant;
an admin key records on behalf of others (the body's ``user``/``project`` win).
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError
from starlette.requests import Request
from starlette.responses import Response

from .. import errors
from .chat import read_json
from .wire import HTTPError, json_response

MAX_BATCH = 1000


class UsageIn(BaseModel):
    """One usage report."""

    model_config = ConfigDict(extra="forbid")

    provider: str = Field(min_length=1)
    model: str = Field(min_length=1)
    input_tokens: StrictInt = Field(ge=0)
    output_tokens: StrictInt = Field(ge=0)
    cache_read_tokens: StrictInt = Field(default=0, ge=0)
    cache_write_tokens: StrictInt = Field(default=0, ge=0)
    reasoning_tokens: StrictInt = Field(default=0, ge=0)
    user: str | None = None
    project: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)
    timestamp: datetime | None = None
    latency_ms: float | None = Field(default=None, ge=0)
    requested_model: str | None = None
    section: str | None = None
    status: str = "ok"


def _field_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    out = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in e["loc"])
        out.append({"field": prefix + loc if loc else prefix.rstrip(".") or "body",
                    "message": e["msg"].removeprefix("Value error, ")})
    return out


def _unprocessable(problems: list[dict[str, str]]) -> HTTPError:
    first = problems[0]
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return HTTPError(422, f"{first['field']}: {first['message']}{more}", code="validation_error",
                     param=first["field"], extra={"errors": problems})


def _tags(item: UsageIn, key: Any) -> dict[str, str]:
    tags = dict(item.tags)
    if item.user:
        tags["user"] = item.user
    if item.project:
        tags["project"] = item.project
    if key.admin:  # an admin key records on behalf of others: the body's tenancy wins
        return {**key.tags(), **tags, "key_id": key.id}
    return {**tags, **key.tags()}


def _check(items: list[Any], client: Any, prefix: str) -> list[UsageIn]:
    """Validate and price-check every item; raise one 422 listing every problem."""
    parsed: list[UsageIn] = []
    problems: list[dict[str, str]] = []
    for i, raw in enumerate(items):
        where = f"{prefix}{i}." if prefix else ""
        try:
            item = UsageIn.model_validate(raw)
        except ValidationError as exc:
            problems.extend(_field_errors(exc, where))
            continue
        if item.reasoning_tokens > item.output_tokens:
            problems.append({"field": where + "reasoning_tokens",
                             "message": "reasoning_tokens are part of output_tokens and cannot exceed them"})
        if client.settings.on_missing_price != "record":
            try:
                client.pricebook.price(item.provider, item.model, item.timestamp)
            except errors.MissingPriceError as exc:
                problems.append({"field": where + "model", "message": str(exc)})
        parsed.append(item)
    if problems:
        raise _unprocessable(problems)
    return parsed


def _record(client: Any, key: Any, item: UsageIn) -> dict[str, Any]:
    try:
        rec = client.ledger.record(
            provider=item.provider, model=item.model, input_tokens=item.input_tokens,
            output_tokens=item.output_tokens, cache_read_tokens=item.cache_read_tokens,
            cache_write_tokens=item.cache_write_tokens, reasoning_tokens=item.reasoning_tokens,
            tags=_tags(item, key), at=item.timestamp, latency_ms=item.latency_ms,
            requested_model=item.requested_model, section=item.section, status=item.status)
    except errors.InvalidRequestError as exc:
        raise _unprocessable([{"field": exc.param or "body", "message": str(exc)}]) from None
    return record_json(rec)


def record_json(rec: Any) -> dict[str, Any]:
    """A ledger record as the usage endpoints return it (money as exact text)."""
    cost = None
    if rec.total_usd is not None:
        cost = {"input_usd": rec.input_usd, "cache_read_usd": rec.cache_read_usd,
                "cache_write_usd": rec.cache_write_usd, "output_usd": rec.output_usd,
                "other_usd": rec.other_usd, "total_usd": rec.total_usd,
                "price_version": rec.price_version}
    return {"id": rec.id, "object": "unillm.usage", "provider": rec.provider, "model": rec.model,
            "status": rec.status, "input_tokens": rec.input_tokens,
            "cache_read_tokens": rec.cache_read_tokens, "cache_write_tokens": rec.cache_write_tokens,
            "output_tokens": rec.output_tokens, "reasoning_tokens": rec.reasoning_tokens,
            "tags": rec.tags, "started_at": rec.started_at, "cost": cost}


async def ingest(request: Request) -> Response:
    gw = request.app.state.gateway
    key = gw.authenticate(request)
    body = await read_json(request)
    item = _check([body], gw.client, "")[0]
    return json_response(await asyncio.to_thread(_record, gw.client, key, item), 201)


async def ingest_batch(request: Request) -> Response:
    gw = request.app.state.gateway
    key = gw.authenticate(request)
    body = await read_json(request)
    items = body.get("records") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise _unprocessable([{"field": "records", "message": "must be a non-empty list of usage reports"}])
    if len(items) > MAX_BATCH:
        raise _unprocessable([{"field": "records", "message": f"at most {MAX_BATCH} reports per batch"}])
    parsed = _check(items, gw.client, "records.")

    def write() -> list[dict[str, Any]]:
        with gw.client.ledger.store.transaction():  # one commit for the batch, or none
            return [_record(gw.client, key, item) for item in parsed]

    out = await asyncio.to_thread(write)
    return json_response({"object": "list", "data": out}, 201)
