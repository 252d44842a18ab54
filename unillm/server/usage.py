"""``POST /v1/usage`` and ``/v1/usage/batch``: record usage that other systems report.

A body's fields are the ledger's reportable fields (`unillm.ledger.fields.REPORTED`: what
`Ledger.record` takes, ``at`` spelled ``timestamp``) plus ``user`` and ``project``. It is
validated field by field; every problem comes back at once as a 422
``{"error": {..., "code": "validation_error", "errors": [{"field", "message"}]}}``.
A batch is all or nothing: it is validated and priced in full, then written in
one transaction.

Bounds: every token count at most 10^10 (`MAX_TOKENS`), every unit count at most 10^10,
``timestamp`` no older than ``[server] usage_window_seconds`` (default 7 days) and no
more than `FUTURE_SKEW` seconds ahead.

Admission: reported usage is money already spent, so it is never refused for budget:
each record is charged to every budget its tags match, in the ledger row's transaction
(`Budgets.charge`), even past the limit, and the calls admitted after it are refused.
It is charged to the current period, whatever its timestamp says, so a back-dated
report cannot slip past a budget. Each request counts once against the key's RPM.

Tenancy: the gateway's one `TagPolicy`, as for chat. The key's tags (``key_id``, and
``user``/``project`` when the key has them) override the body's; a caller may set a tag
only under a name ``[server] allow_tags`` lists, and never a reserved one (``user``,
``project``, ``key_id``, any tag a budget scopes on): a 422 names each such field. An
admin key records on behalf of others: the body's ``user``/``project``/tags win
(``key_id`` is still the admin key's).
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    create_model,
)
from starlette.requests import Request
from starlette.responses import Response

from .. import errors
from ..ledger.fields import MAX_TOKENS, REPORTED, Reported, check
from .chat import read_json
from .ratelimit import Limited
from .tenancy import TagPolicy
from .wire import HTTPError, json_response

MAX_BATCH = 1000
#: how far ahead of the gateway's clock a timestamp may be (clocks drift)
FUTURE_SKEW = 300.0

def _body_type(f: Reported) -> tuple[Any, Any]:
    """``(annotation, default)`` of a `Reported` field in a ``POST /v1/usage`` body: its kind's
    type and bounds, checked again (with the cross-field rules) by `fields.check`."""
    required: Any = ...
    if f.kind == "count":
        return StrictInt, Field(required if f.required else f.default, ge=0, le=MAX_TOKENS)
    if f.kind == "text":
        return (str, Field(required, min_length=1)) if f.required else \
            (str | None, Field(None, min_length=1))
    if f.kind == "choice":
        return Literal[f.choices], f.default
    return {"number": (float | None, Field(None, ge=0, allow_inf_nan=False)),
            "time": (datetime | None, None),
            "tags": (dict[str, str], Field(default_factory=dict)),
            "units": (dict[str, StrictInt | StrictFloat | str], Field(default_factory=dict)),
            }[f.kind]


#: one usage report: the ledger's reportable fields (`fields.REPORTED`), plus ``user`` and
#: ``project``, which are tags (see `_tenancy`)
_BODY: dict[str, Any] = {f.body_name: _body_type(f) for f in REPORTED}
UsageIn: type[BaseModel] = create_model(
    "UsageIn", __config__=ConfigDict(extra="forbid"), user=(str | None, None), project=(str | None, None),
    **_BODY)


def _field_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for e in exc.errors():
        loc = e["loc"][:2] if e["loc"] and e["loc"][0] in ("tags", "units") else e["loc"]
        field = prefix + ".".join(str(p) for p in loc) if loc else prefix.rstrip(".") or "body"
        if all(p["field"] != field for p in out):  # a union's alternatives: one problem
            out.append({"field": field, "message": e["msg"].removeprefix("Value error, ")})
    return out


def _unprocessable(problems: list[dict[str, str]]) -> HTTPError:
    first = problems[0]
    more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
    return HTTPError(422, f"{first['field']}: {first['message']}{more}", code="validation_error",
                     param=first["field"], extra={"errors": problems})


def _tenancy(body: dict[str, Any], key: Any, policy: TagPolicy,
             where: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The record's tags, and a problem for every tag the caller may not set (the gateway's
    one `TagPolicy`, as for chat: ``user``/``project`` in the body are tags too)."""
    caller = dict(body["tags"])
    fields = {name: f"{where}tags.{name}" for name in caller}
    for name in ("user", "project"):
        value = body[name]
        if value:
            caller[name], fields[name] = value, where + name
    if key.admin:  # an admin key records on behalf of others: the body's tenancy wins
        return {**key.tags(), **caller, "key_id": key.id}, []
    problems = [{"field": fields[name], "message": why} for name, why in policy.problems(caller)]
    return {**caller, **key.tags()}, problems


def _timestamp(at: datetime | None, window: float, now: datetime) -> str | None:
    """What is wrong with the report's timestamp, if anything (None: fine or absent)."""
    if at is None:
        return None
    at = at if at.tzinfo else at.replace(tzinfo=timezone.utc)
    if at < now - timedelta(seconds=window):
        return (f"must be within the last {window:g} seconds ([server] usage_window_seconds); "
                f"got {at.isoformat()}")
    if at > now + timedelta(seconds=min(FUTURE_SKEW, window)):
        return f"is in the future ({at.isoformat()}); report usage after it happened"
    return None


def _check(items: list[Any], client: Any, key: Any, policy: TagPolicy, prefix: str) -> list[dict[str, Any]]:
    """Validate, bound and price-check every item into `Ledger.record`'s keywords; raise one
    422 listing every problem."""
    parsed: list[dict[str, Any]] = []
    problems: list[dict[str, str]] = []
    now = datetime.now(timezone.utc)
    window = client.settings.server.usage_window_seconds
    wire = {f.name: f.body_name for f in REPORTED}
    for i, raw in enumerate(items):
        where = f"{prefix}{i}." if prefix else ""
        try:
            body = UsageIn.model_validate(raw).model_dump()
        except ValidationError as exc:
            problems.extend(_field_errors(exc, where))
            continue
        report = {f.name: body[f.body_name] for f in REPORTED}
        when = _timestamp(report["at"], window, now)
        if when:
            problems.append({"field": where + "timestamp", "message": when})
        report["tags"], tag_problems = _tenancy(body, key, policy, where)
        problems.extend(tag_problems)
        problems.extend({"field": where + wire.get(param, param), "message": message}
                        for param, message in check(report)[1])
        if client.settings.on_missing_price != "record":
            try:
                client.pricebook.price(report["provider"], report["model"], report["at"])
            except errors.MissingPriceError as exc:
                problems.append({"field": where + "model", "message": str(exc)})
        parsed.append(report)
    if problems:
        raise _unprocessable(problems)
    return parsed


def _record(client: Any, report: dict[str, Any], where: str = "") -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Record one report and charge it to its budgets, inside the caller's transaction."""
    try:
        rec = client.ledger.record(**report)
    except errors.InvalidRequestError as exc:
        raise _unprocessable([{"field": where + (exc.param or "body"), "message": str(exc)}]) from None
    events: list[dict[str, Any]] = []
    budgets = client.budgets
    if budgets:
        tokens = rec.prompt_tokens + rec.output_tokens
        with client.ledger.store.transaction() as tx:  # joins the transaction the row is in
            events = budgets.charge(tx, rec.tags, rec.total_usd, tokens)
    return record_json(rec), events


def _write(gw: Any, key: Any, parsed: list[dict[str, Any]], prefix: str) -> list[dict[str, Any]]:
    """Every report, its ledger row and its budget charges in one transaction; then alerts."""
    client = gw.client
    if key.budget_usd is not None:
        gw._register_budget(key)  # so this key's own budget is charged too
    out: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    with client.ledger.store.transaction():
        for i, report in enumerate(parsed):
            body, fired = _record(client, report, f"{prefix}{i}." if prefix else "")
            out.append(body)
            events += fired
    for event in events:
        client.budgets.alerts.emit(event)
    return out


def _rate(gw: Any, key: Any) -> None:
    """An ingest request counts once against the key's requests per minute."""
    try:
        gw.limiter.admit(key.id, key.rpm, None)
    except Limited as exc:
        raise HTTPError(429, str(exc), type="rate_limit_error", code="rate_limit_exceeded",
                        retry_after=exc.retry_after) from None


async def ingest(request: Request) -> Response:
    gw = request.app.state.gateway
    key = gw.authenticate(request)
    body = await read_json(request)
    parsed = _check([body], gw.client, key, gw.tag_policy, "")
    await asyncio.to_thread(_rate, gw, key)
    out = await asyncio.to_thread(_write, gw, key, parsed, "")
    return json_response(out[0], 201)


async def ingest_batch(request: Request) -> Response:
    gw = request.app.state.gateway
    key = gw.authenticate(request)
    body = await read_json(request)
    items = body.get("records") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise _unprocessable([{"field": "records", "message": "must be a non-empty list of usage reports"}])
    if len(items) > MAX_BATCH:
        raise _unprocessable([{"field": "records", "message": f"at most {MAX_BATCH} reports per batch"}])
    parsed = _check(items, gw.client, key, gw.tag_policy, "records.")
    await asyncio.to_thread(_rate, gw, key)
    out = await asyncio.to_thread(_write, gw, key, parsed, "records.")
    return json_response({"object": "list", "data": out}, 201)


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
            "cache_write_1h_tokens": rec.cache_write_1h_tokens,
            "output_tokens": rec.output_tokens, "reasoning_tokens": rec.reasoning_tokens,
            "units": {k: format(v, "f") for k, v in rec.units.items()},
            "tags": rec.tags, "started_at": rec.started_at, "cost": cost}
