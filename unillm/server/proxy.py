"""``ANY /proxy/{path}``: forward a request as it is to an upstream the operator allows, and
meter it (the Halo Tracker way).

A client points its SDK's base URL at ``https://gateway/proxy`` and names the vendor in
``x-target-url`` (``https://api.anthropic.com``); the request goes to that URL plus the
path and query, if and only if the result lies under a ``[[server.upstreams]]`` base URL:

* the caller authenticates with its gateway key (``Authorization: Bearer``, ``x-api-key``
  or ``x-goog-api-key``, whichever its SDK sends); that key is never forwarded — the
  upstream's own credential is injected instead, so tenants never hold vendor keys;
* no redirect is followed; a name that resolves to a private, loopback, link-local or
  reserved address is refused unless the upstream names such an address itself (an IP
  literal, ``localhost``) or says ``allow_private``; the address checked is the one
  connected to (no second lookup to rebind);
* the answer streams back as it arrives (SSE included) and is priced when it ends: vendor
  chat answers from their usage (all four native protocols, JSON and SSE), other APIs
  through ``[[apis]]``, and ``x-model`` / ``x-input-tokens`` / ``x-output-tokens`` request
  headers for answers that carry no usage (``usage_source = "reported"``). A JSON answer
  carries ``x-unillm-cost`` and ``x-unillm-ledger-id``; a stream's cost is in the ledger.
* ``x-service-name`` and ``x-user-id`` become the tags ``service`` and ``end_user`` when
  ``[server] allow_tags`` allows them (else 400); the key's user and project always win.

Budgets and rate limits apply as to ``/v1/chat/completions`` (a refusal is a 402/429
before anything is sent).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote, urlsplit

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .. import errors
from ..config import Upstream
from .wire import HTTPError, header_value

#: request headers never forwarded: hop-by-hop, the caller's gateway credentials, ours
_DROP = frozenset({
    "host", "connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "proxy-authorization",
    "proxy-connection", "content-length", "authorization", "x-api-key", "x-goog-api-key", "cookie",
    "accept-encoding", "x-target-url", "x-service-name", "x-user-id", "x-model", "x-input-tokens",
    "x-output-tokens", "forwarded", "x-forwarded-for", "x-forwarded-host", "x-real-ip"})
#: response headers not passed back (the body is re-framed, decoded)
_DROP_BACK = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
                        "set-cookie"})
#: what ``x-service-name`` / ``x-user-id`` become, as tags
_TAG_HEADERS = {"x-service-name": "service", "x-user-id": "end_user"}


def _secret(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return (request.headers.get("x-api-key") or request.headers.get("x-goog-api-key") or "").strip() or None


def resolve_target(upstreams: list[Upstream], target: str | None, path: str, query: str) -> tuple[Upstream, str]:
    """The upstream and the full URL a request goes to, or a 4xx (nothing is sent)."""
    if not upstreams:
        raise HTTPError(404, "this gateway has no upstreams: /proxy is off ([[server.upstreams]])",
                        code="proxy_disabled")
    if not target:
        raise HTTPError(400, "x-target-url is required: the upstream's base URL, like https://api.anthropic.com",
                        param="x-target-url")
    try:
        base = urlsplit(target.strip())
        port = base.port
    except ValueError:
        raise HTTPError(400, "x-target-url is not a URL", param="x-target-url") from None
    decoded = unquote(path)
    if (base.scheme not in ("http", "https") or not base.hostname or "@" in base.netloc or base.query
            or base.fragment or "\\" in decoded or any(seg in ("..", ".") for seg in decoded.split("/"))
            or not (target + path).isprintable()):
        raise HTTPError(400, "x-target-url must be an http(s) base URL, and the path may not climb out of it",
                        param="x-target-url")
    full_path = base.path.rstrip("/") + "/" + path.lstrip("/")
    host = base.hostname.lower()
    eff = port or (443 if base.scheme == "https" else 80)
    # the upstream with the longest base path under which the named base lies
    best: tuple[int, Upstream] | None = None
    named = base.path.rstrip("/")
    for up in upstreams:
        u = urlsplit(up.base_url)
        if (u.scheme, (u.hostname or "").lower(), u.port or (443 if u.scheme == "https" else 80)) != (
                base.scheme, host, eff):
            continue
        prefix = u.path.rstrip("/")
        if (named == prefix or named.startswith(prefix + "/") or not prefix) \
                and (best is None or len(prefix) > best[0]):
            best = (len(prefix), up)
    if best is not None:
        return best[1], f"{base.scheme}://{base.netloc}{full_path}" + (f"?{query}" if query else "")
    raise HTTPError(403, "x-target-url is not an upstream this gateway forwards to ([[server.upstreams]])",
                    type="permission_error", code="target_not_allowed", param="x-target-url")


def _named_local(up: Upstream) -> bool:
    host = (urlsplit(up.base_url).hostname or "").lower()
    if up.allow_private or host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _forbidden(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return (addr.is_private or addr.is_loopback or addr.is_link_local or addr.is_reserved or addr.is_multicast
            or addr.is_unspecified)


async def pinned_address(up: Upstream, url: str) -> str | None:
    """The address to connect to (checked), or None to connect by name (a local upstream)."""
    parts = urlsplit(url)
    if _named_local(up):
        return None
    host = parts.hostname or ""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, parts.port or 443, type=socket.SOCK_STREAM)
    except OSError:
        raise HTTPError(502, f"the upstream {up.name!r} could not be resolved", type="api_error",
                        code="upstream_unreachable") from None
    addresses = [str(info[4][0]) for info in infos]
    if not addresses or any(_forbidden(a) for a in addresses):
        raise HTTPError(403, f"the upstream {up.name!r} resolves to a private or loopback address, which this "
                        "gateway does not forward to (set allow_private on the upstream to allow it)",
                        type="permission_error", code="target_not_allowed", param="x-target-url")
    return addresses[0]


async def endpoint(request: Request) -> Response:
    gw = request.app.state.gateway
    key = gw.verify(_secret(request))
    up, url = resolve_target(gw.server.upstreams, request.headers.get("x-target-url"),
                             request.path_params.get("path", ""), request.url.query)
    caller = {tag: request.headers[h] for h, tag in _TAG_HEADERS.items() if h in request.headers}
    try:
        tags = gw.tag_policy.merge(caller, key, field="header")
    except HTTPError as err:
        name = err.param.rsplit(".", 1)[-1] if err.param else ""
        header = next((h for h, t in _TAG_HEADERS.items() if t == name), name)
        raise HTTPError(400, f"{header}: {err.message}", code="tag_not_allowed", param=header) from None
    await gw.admit(key)
    body = await request.body()
    address = await pinned_address(up, url)
    return await forward(gw, request, up, url, address, body, tags)


def _headers(request: Request, up: Upstream, url: str) -> dict[str, str]:
    out = {k: v for k, v in request.headers.items() if k.lower() not in _DROP and not k.lower().startswith("x-unillm")}
    out["accept-encoding"] = "identity"  # the answer is read to price it
    secret = up.key()
    if secret and up.auth != "none":
        name = {"bearer": "authorization", "x-api-key": "x-api-key", "x-goog-api-key": "x-goog-api-key"}.get(
            up.auth, up.auth[7:].strip().lower())
        out[name] = f"Bearer {secret}" if up.auth == "bearer" else secret
    return out


async def forward(gw: Any, request: Request, up: Upstream, url: str, address: str | None, body: bytes,
                  tags: dict[str, str]) -> Response:
    import httpx

    from ..metering.apis import Exchange
    from ..metering.meter import Vendor
    meter = gw.meter
    parts = urlsplit(url)
    headers = _headers(request, up, url)
    exchange = Exchange(request.method, url, parts.hostname or "", parts.port, parts.path, headers, body)
    target = meter.target(request.method, parts.scheme, parts.hostname or "", parts.port, parts.path)
    reported = _reported(request)
    pending = meter.start(target if target is not None else Vendor(up.name, ""), exchange, tags)
    if target is not None:
        try:
            await gw.client.ledger.store.arun(meter.admit, pending)
        except errors.BudgetExceededError as exc:
            raise gw.http_error(exc) from None
    send_url, extensions = url, {}
    if address is not None:  # connect to the address that was checked, keep the name for TLS and Host
        netloc = (f"[{address}]" if ":" in address else address) + (f":{parts.port}" if parts.port else "")
        send_url = url.replace(parts.netloc, netloc, 1)
        headers["host"] = parts.netloc
        extensions = {"sni_hostname": parts.hostname}
    client: httpx.AsyncClient = gw.proxy_client()
    req = client.build_request(request.method, send_url, headers=headers, content=body, extensions=extensions)
    try:
        upstream = await client.send(req, stream=True, follow_redirects=False)
    except httpx.HTTPError as exc:
        await gw.client.ledger.store.arun(meter.finish, pending, exc)
        raise HTTPError(502, f"the upstream {up.name!r} did not answer ({type(exc).__name__})", type="api_error",
                        code="upstream_unreachable") from None
    exchange.status = upstream.status_code
    exchange.response_headers = {k.lower(): v for k, v in upstream.headers.items()}
    back = {k: v for k, v in upstream.headers.items() if k.lower() not in _DROP_BACK}
    is_json = exchange.response_headers.get("content-type", "").startswith("application/json")
    if is_json:  # read whole: the cost goes in its headers
        try:
            data = await upstream.aread()
        finally:
            await upstream.aclose()
        exchange.response_body = data
        rec = await gw.client.ledger.store.arun(_settle, meter, pending, target, reported, up)
        return Response(data, upstream.status_code, headers={**back, **_cost_headers(rec)})
    return StreamingResponse(_relay(gw, meter, pending, upstream, target, reported, up), upstream.status_code,
                             headers=back)


async def _relay(gw: Any, meter: Any, pending: Any, upstream: Any, target: Any, reported: Any,
                 up: Upstream) -> AsyncIterator[bytes]:
    from ..metering.meter import MAX_CAPTURE
    parts: list[bytes] = []
    size = 0
    error: BaseException | None = None
    try:
        async for chunk in upstream.aiter_bytes():
            size += len(chunk)
            if size <= MAX_CAPTURE:
                parts.append(chunk)
            yield chunk
    except Exception as exc:  # noqa: BLE001 - the upstream broke mid-way: priced as far as it got
        error = exc
    finally:
        await upstream.aclose()
        pending.exchange.response_body = b"".join(parts)
        await gw.client.ledger.store.arun(_settle, meter, pending, target, reported, up, error)


def _reported(request: Request) -> tuple[str, int, int] | None:
    """``x-model`` / ``x-input-tokens`` / ``x-output-tokens``, when all are usable."""
    model = request.headers.get("x-model", "").strip()
    if not model:
        return None
    try:
        counts = int(request.headers.get("x-input-tokens", "0")), int(request.headers.get("x-output-tokens", "0"))
    except ValueError:
        raise HTTPError(400, "x-input-tokens and x-output-tokens are whole numbers", param="x-input-tokens") from None
    if not all(0 <= c <= 10**10 for c in counts):
        raise HTTPError(400, "x-input-tokens and x-output-tokens are between 0 and 10^10", param="x-input-tokens")
    return model, counts[0], counts[1]


def _settle(meter: Any, pending: Any, target: Any, reported: tuple[str, int, int] | None, up: Upstream,
            error: BaseException | None = None) -> Any:
    """The row: the meter's when it priced the answer; else the caller's reported usage;
    else an unpriced row saying why (never a silent $0)."""
    if target is not None:
        rec = meter.finish(pending, error)
        if rec is not None and (rec.status != "unpriced" or reported is None):
            return rec
    pending.done = True
    from ..ledger import CallRecord
    ex = pending.exchange
    base = {"tags": pending.tags, "section": None, "started_at": pending.started}
    if ex.status >= 400 or error is not None:
        rec = CallRecord.from_parts(provider=up.name, model=reported[0] if reported else "unknown", status="error",
                                    error_class=f"http_{ex.status}" if error is None else type(error).__name__,
                                    **base)
        meter.client.ledger.add(rec)
        return rec
    if reported is None:
        rec = CallRecord.from_parts(provider=up.name, model="unknown", status="unpriced",
                                    error_class="unpriced: no usage in the answer, no [[apis]] entry and no "
                                    "x-model header", **base)
        meter.client.ledger.add(rec)
        return rec
    model, tin, tout = reported
    provider, name = up.name, model
    try:
        ref = meter.client.resolve(model)
        provider, name = ref.provider, ref.model
    except errors.UnillmError:
        pass
    from ..budgets.settle import commit
    from ..types import Usage
    usage = Usage(input_tokens=tin, output_tokens=tout, source="reported")
    try:
        cost = meter.client.pricebook.price(provider, name, pending.started).cost(usage)
    except errors.MissingPriceError as exc:
        cost = None
        why = f"unpriced: {exc}"[:200]
    rec = CallRecord.from_parts(provider=provider, model=name, usage=usage, cost=cost,
                                status="ok" if cost is not None else "unpriced",
                                error_class=None if cost is not None else why, **base)
    commit(meter.client.ledger, meter.client.budgets, rec, pending.hold, cost.total_usd if cost else None,
           usage.total_tokens, charge=pending.tags if meter.client.budgets else None)
    return rec


def _cost_headers(rec: Any) -> dict[str, str]:
    if rec is None:
        return {}
    return {"x-unillm-cost": str(rec.total_usd) if rec.total_usd is not None else "unpriced",
            "x-unillm-ledger-id": rec.id, "x-unillm-model": header_value(f"{rec.provider}/{rec.model}")}
