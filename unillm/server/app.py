"""The gateway application: `create_app(client)` -> a Starlette app.

``Gateway`` holds what every handler shares: the `Client`, the key store, the
rate limiter and the scrubber that keeps provider API keys out of responses.
Routes::

    POST /v1/chat/completions   chat.completions        GET  /v1/analytics  analytics.endpoint
    POST /v1/embeddings         embeddings.embeddings
    GET  /v1/models             chat.models             GET  /v1/budgets    analytics.budgets
    POST /v1/usage[/batch]      usage.ingest/_batch     GET  /health        health
    POST|GET /admin/keys, DELETE /admin/keys/{id}       GET  /dashboard     dashboard.endpoint
    POST /admin/keys/{id}/rotate                         GET|PUT /admin/prices/{p}/{m}  prices
    POST /admin/provider-keys/{provider}/test  provider_keys.test_key (sealed keys: `unillm.sealed`)
    GET  /metrics  metrics.endpoint (only with [server.metrics] enabled)
    POST /v1/messages  messages.create (Anthropic wire)   POST /v1/responses  responses.create
    GET  /v1/models/{id}  routes.model

Every ``/v1/*`` and ``/admin/*`` request needs ``Authorization: Bearer <key>``;
the dashboard also accepts ``?key=`` once, which opens a server-side session
(`sessions.Sessions`): the browser then holds a random session id, never the key.

What a caller may send is bounded by ``[server]`` (`unillm.config.ServerSettings`):
`limits.Limits`, the one middleware, keeps `capacity.Capacity` (requests served at once,
a bounded queue, then 503), body size and read time, `limits.parse_json` reads
bodies, `tenancy.TagPolicy` decides which tags a caller may set, and
`Gateway.check_model` refuses models of providers the operator did not configure.

The app owns its `Client` for its lifetime (`lifespan`): the ledger and the response
cache are opened at startup, so a misconfigured one stops ``unillm serve`` before it
accepts a request, and at shutdown pending rate-limit counts are written and the
Client is closed (``await client.aclose()``: SDK connection pools, ledger connection).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import errors
from ..config import ServerSettings
from .keys import DEFAULT_GRACE_SECONDS, ApiKey, KeyStore, bearer
from .limiters import open_limiter
from .limits import VERIFIED
from .ratelimit import Limited, Limiter
from .sessions import SESSION_COOKIE, Sessions
from .tenancy import TagPolicy
from .wire import HTTPError, Scrubber, error_response, from_exception, json_response

log = logging.getLogger("unillm.server")


class Gateway:
    """Shared state of one gateway process."""

    def __init__(self, client: Any, *, keys: KeyStore | None = None,
                 limiter: Limiter | None = None) -> None:
        self.client = client
        self.keys = keys or KeyStore(client.ledger.store)
        self.limiter = limiter or open_limiter(client)  # shared by every worker (see ratelimit)
        self.scrub = Scrubber(p.resolved_api_key() for p in client.providers.values())
        settings = getattr(client, "settings", None)
        self.server: ServerSettings = getattr(settings, "server", None) or ServerSettings()
        self.tag_policy = TagPolicy(self.server.allow_tags, client)
        self.sessions = Sessions(self.server.session_seconds)
        self._configured = frozenset(getattr(settings, "configured_providers", None) or ())
        self._budgeted: set[str] = set()
        self._managed: Any = None  # `admin.Managed`, made by `admin.managed` on first use
        self.metrics: Any = None  # `metrics.Metrics` when [server.metrics] enabled
        if self.server.metrics.enabled:
            from .metrics import Metrics
            self.metrics = Metrics(self.server.metrics, client)
        from .alarms import InvalidKeys
        self.invalid_keys = InvalidKeys(client.budgets.alerts)
        self._proxy_client: Any = None
        self.capacity: Any = None  # `capacity.Capacity`, made by `create_app`
        for key in self.keys.list():  # so /v1/budgets and the dashboard show every key's budget
            if key.budget_usd is not None:
                self._register_budget(key)

    @functools.cached_property
    def meter(self) -> Any:
        """Prices what ``/proxy`` forwards (vendor answers, ``[[apis]]``): `unillm.metering`."""
        from ..metering.meter import Meter
        return Meter(self.client, self.client.settings.apis)

    def proxy_client(self) -> Any:
        """The HTTP client ``/proxy`` forwards with (never follows a redirect)."""
        if self._proxy_client is None:
            import httpx
            self._proxy_client = httpx.AsyncClient(follow_redirects=False, timeout=httpx.Timeout(600, connect=10),
                                                   trust_env=False)
        return self._proxy_client

    # ── auth ──
    def authenticate(self, request: Request, *, admin: bool = False, browser: bool = False) -> ApiKey:
        """The key this request carries; 401 without a valid one, 403 when not admin enough.

        ``browser``: a dashboard session cookie stands in for the bearer key. The bearer key's
        lookup made by the middleware (`limits.VERIFIED`) is used as it is: hashed once."""
        verified = request.scope.get(VERIFIED)
        if verified is not None:
            return self._checked(verified[0], verified[1], admin)
        secret = _bearer(request)
        if secret is None and browser:
            key = self._session_key(request)
            if key is not None:
                return key
        return self.verify(secret, admin=admin)

    def verify(self, secret: str | None, *, admin: bool = False) -> ApiKey:
        """The active key ``secret`` is (401 if none, 403 when ``admin`` and it is not)."""
        if not secret:
            raise HTTPError(401, "missing API key: send 'Authorization: Bearer <key>' "
                            "(create one with `unillm keys create`)", code="missing_api_key")
        return self._checked(secret, self.keys.verify(secret), admin)

    def _checked(self, secret: str, key: ApiKey | None, admin: bool) -> ApiKey:
        """``key`` (what `KeyStore.verify` answered for ``secret``) if it may be served."""
        if key is None:
            self.invalid_keys.seen(secret)
            if self.metrics is not None:
                self.metrics.invalid_keys.inc()
            raise HTTPError(401, "invalid or revoked API key", code="invalid_api_key")
        if key.expired():
            raise HTTPError(401, f"API key {key.id} expired at {key.expires_at}", code="expired_api_key")
        if admin and not key.admin:
            raise HTTPError(403, "this endpoint needs an admin key", type="permission_error",
                            code="admin_required")
        return key

    def _session_key(self, request: Request) -> ApiKey | None:
        """The admin key behind the request's dashboard session (still active), or None."""
        key_id = self.sessions.key_id(request.cookies.get(SESSION_COOKIE))
        if key_id is None:
            return None
        key = self.keys.get(key_id)
        if key is None or not key.active or not key.admin:
            self.sessions.end(request.cookies.get(SESSION_COOKIE))
            return None
        return key

    # ── where a call may go ──
    def reachable(self, provider: str) -> bool:
        """A provider the operator configured: a ``[providers.X]`` table, or its API key set."""
        if provider in self._configured:
            return True
        sealed = self.client.sealed_key(provider)  # `unillm secrets set`: used when the config has none
        if sealed:
            self.scrub.add(sealed)
        p = self.client.providers.get(provider)
        return p is not None and bool(p.resolved_api_key())

    def check_model(self, model: str, key: ApiKey | None = None) -> None:
        """404 for a model of a provider the operator did not configure (nothing is sent);
        403 for one ``key``'s allowed models do not match (as asked, or as provider/model)."""
        ref = self.client.resolve(model)  # an unknown name raises UnknownModelError (404)
        if key is not None and not key.allows(model, f"{ref.provider}/{ref.model}"):
            raise HTTPError(403, f"this key may not use the model {model!r} (allowed: "
                            f"{', '.join(key.models or ())})", type="permission_error",
                            code="model_not_allowed", param="model")
        routed = any(d.model == model for d in self.client.settings.deployments)  # each names a provider set up
        if not routed and not self.reachable(ref.provider):
            raise HTTPError(404, f"the model {model!r} is not served by this gateway "
                            "(GET /v1/models lists the models it serves)",
                            code="model_not_found", param="model")

    # ── admission and accounting ──
    async def admit(self, key: ApiKey) -> None:
        """Rate limits, then the key's budget (registered with the client's budgets)."""
        if self._managed is None or self._managed.due():  # budgets, rules changed over HTTP (<= 2 s old)
            from .admin import refresh
            await refresh(self)
        concurrent = self.client.settings.server.max_concurrent_per_key
        try:
            if key.rpm or key.tpm or concurrent:  # else nothing to count (and no coroutine to run)
                await self.limiter.aadmit(key.id, key.rpm, key.tpm, concurrent)
        except Limited as exc:
            if self.metrics is not None:
                self.metrics.refused(key, exc.limit)
            raise HTTPError(429, str(exc), type="rate_limit_error", code="rate_limit_exceeded",
                            retry_after=exc.retry_after) from None
        if key.budget_usd is not None:
            self._register_budget(key)

    def _register_budget(self, key: ApiKey) -> None:
        """Add the key's budget to the client's budgets once (scope: its key_id tag)."""
        if key.id in self._budgeted:
            return
        spec = key.budget_spec()
        assert spec is not None
        if not any(s.name == spec["name"] for s in self.client.budgets.specs):
            self.client.budgets.add(spec)
        self._budgeted.add(key.id)

    def finished(self, key: ApiKey, resp: Any) -> None:
        """Count a finished call's tokens against the key's TPM window."""
        if key.tpm and resp.usage is not None:
            self.limiter.add_tokens(key.id, resp.usage.total_tokens)

    def http_error(self, exc: BaseException) -> HTTPError:
        err = from_exception(exc)
        err.message = self.scrub(err.message)
        return err

    # ── models ──
    def model_list(self) -> list[dict[str, Any]]:
        """``provider/model`` for each priced model of a provider that has a key, plus aliases."""
        settings = self.client.settings
        usable = {name for name in self.client.providers if self.reachable(name)}
        seen: dict[str, str] = {}
        for pm in self.client.pricebook.models():
            if pm.provider in usable and pm.name != "*":
                seen.setdefault(f"{pm.provider}/{pm.name}", pm.provider)
        for alias in settings.aliases:
            try:
                provider = self.client.resolve(alias).provider
            except errors.UnillmError:
                continue
            if provider in usable:
                seen.setdefault(alias, provider)
        return [{"id": mid, "object": "model", "created": 0, "owned_by": owner}
                for mid, owner in sorted(seen.items())]


def _bearer(request: Request) -> str | None:
    return bearer(request.headers.get("authorization", ""))


# ── small endpoints ──────────────────────────────────────────────────────────

async def health(request: Request) -> Response:
    """Ledger and cache reachability; 503 when the ledger cannot be read."""
    gw: Gateway = request.app.state.gateway
    ledger = await asyncio.to_thread(_check_ledger, gw.client)
    cache = await asyncio.to_thread(_check_cache, gw.client)
    ok = ledger["ok"] and cache["ok"] is not False
    return json_response({"status": "ok" if ok else "degraded", "ledger": ledger, "cache": cache},
                         200 if ok else 503)


def _check_ledger(client: Any) -> dict[str, Any]:
    try:
        client.ledger.store.last_cursor()
        return {"ok": True}
    except Exception as exc:  # noqa: BLE001 - report, never raise, from a health probe
        return {"ok": False, "error": type(exc).__name__}


def _check_cache(client: Any) -> dict[str, Any]:
    cache = getattr(client, "cache", None)
    if cache is None:
        return {"ok": None, "detail": "the client has no response cache"}
    try:
        cache.get("unillm-health-probe")
        return {"ok": True, "backend": type(cache).__name__}
    except Exception as exc:  # noqa: BLE001 - report, never raise, from a health probe
        return {"ok": False, "error": type(exc).__name__}


async def admin_keys(request: Request) -> Response:
    """``POST`` creates a key (shown once), ``GET`` lists keys."""
    gw: Gateway = request.app.state.gateway
    actor = gw.authenticate(request, admin=True)
    if request.method == "GET":
        keys = await asyncio.to_thread(gw.keys.list, request.query_params.get("all") == "1")
        return json_response({"object": "list", "data": [k.public() for k in keys]})
    from .chat import read_json
    body = await read_json(request) or {}
    allowed = {"user", "project", "admin", "budget_usd", "period", "rpm", "tpm", "note", "expires_at",
               "models"}
    unknown = sorted(set(body) - allowed) if isinstance(body, dict) else ["<body>"]
    if unknown:
        raise HTTPError(400, f"unknown field {unknown[0]!r}; known: {', '.join(sorted(allowed))}",
                        param=unknown[0])
    secret, key = await asyncio.to_thread(lambda: gw.keys.create(**body))
    from . import audit
    await asyncio.to_thread(audit.record, gw.client.ledger.store, actor.id, "keys.create", f"key:{key.id}",
                            None, key.public())
    if key.budget_usd is not None:
        gw._register_budget(key)
    return json_response({**key.public(), "key": secret}, 201)


async def admin_key(request: Request) -> Response:
    """``DELETE /admin/keys/{id}`` revokes a key."""
    gw: Gateway = request.app.state.gateway
    actor = gw.authenticate(request, admin=True)
    key_id = request.path_params["key_id"]
    before = await asyncio.to_thread(gw.keys.get, key_id)
    if not await asyncio.to_thread(gw.keys.revoke, key_id):
        raise HTTPError(404, f"no active key {key_id!r}", code="key_not_found")
    from . import audit
    after = await asyncio.to_thread(gw.keys.get, key_id)
    await asyncio.to_thread(audit.record, gw.client.ledger.store, actor.id, "keys.revoke", f"key:{key_id}",
                            before.public() if before else None, after.public() if after else None)
    return json_response({"id": key_id, "revoked": True})


async def admin_key_rotate(request: Request) -> Response:
    """``POST /admin/keys/{id}/rotate`` ``{"grace_seconds": 86400}``: a new secret, shown once."""
    gw: Gateway = request.app.state.gateway
    actor = gw.authenticate(request, admin=True)
    from .chat import read_json
    body = await read_json(request) or {}
    if not isinstance(body, dict) or set(body) - {"grace_seconds"}:
        raise HTTPError(400, "the body may hold only grace_seconds", param="grace_seconds")
    key_id = request.path_params["key_id"]
    grace = body.get("grace_seconds", DEFAULT_GRACE_SECONDS)
    before = await asyncio.to_thread(gw.keys.get, key_id)
    done = await asyncio.to_thread(lambda: gw.keys.rotate(key_id, grace_seconds=grace))
    if done is None:
        raise HTTPError(404, f"no active key {key_id!r}", code="key_not_found")
    from .audit import record
    await asyncio.to_thread(record, gw.client.ledger.store, actor.id, "keys.rotate", f"key:{key_id}",
                            before.public() if before else None, done[1].public())
    return json_response({**done[1].public(), "key": done[0]}, 201)


# ── the app ──────────────────────────────────────────────────────────────────

def lifespan(gateway: Gateway) -> Any:
    """Startup opens the client's ledger and cache; shutdown flushes and closes everything."""
    @asynccontextmanager
    async def span(app: Starlette) -> AsyncIterator[None]:
        client = gateway.client
        await asyncio.to_thread(lambda: (client.ledger, client.cache))
        for name in list(client.providers):  # sealed keys read now: a wrong master key stops the start
            sealed = await asyncio.to_thread(client.sealed_key, name)
            if sealed:
                gateway.scrub.add(sealed)
        client.budgets.alerts.resume()  # webhook rows an earlier process left undelivered
        from .admin import on_sighup
        on_sighup(gateway)  # SIGHUP re-reads unillm.toml, as POST /admin/reload does
        try:
            yield
        finally:
            await asyncio.to_thread(gateway.limiter.flush)  # token counts still queued
            if gateway._proxy_client is not None:
                await gateway._proxy_client.aclose()
            await client.aclose()
    return span


def create_app(client: Any, *, keys: KeyStore | None = None,
               limiter: Limiter | None = None) -> Starlette:
    """The gateway over ``client`` (its ledger holds the keys table)."""
    from starlette.middleware import Middleware

    from ..ledger.sqlite import SQLiteStore
    from . import (
        admin,
        analytics,
        chat,
        dashboard,
        dashboard_pages,
        embeddings,
        messages,
        prices,
        provider_keys,
        proxy,
        responses,
        usage,
    )
    from .capacity import Capacity
    from .limits import Limits
    from .routes import model as model_detail
    gateway = Gateway(client, keys=keys, limiter=limiter)
    limits = gateway.server
    store = client.ledger.store  # a local file: its writes run inline while the gateway is idle
    gateway.capacity = Capacity(max_concurrent=limits.max_concurrent_requests, max_queued=limits.max_queued_requests,
                                queue_timeout=limits.queue_timeout,
                                io=store.io if isinstance(store, SQLiteStore) else None)
    middleware = [Middleware(Limits, max_body_bytes=limits.max_body_bytes, body_timeout=limits.body_timeout,
                             limiter=gateway.limiter, capacity=gateway.capacity, keys=gateway.keys)]
    if limits.cors_origins:  # off unless the operator lists origins
        from starlette.middleware.cors import CORSMiddleware
        middleware.insert(0, Middleware(CORSMiddleware, allow_origins=limits.cors_origins,
                                        allow_methods=["GET", "POST", "DELETE"],
                                        allow_headers=["authorization", "content-type", "x-api-key",
                                                       "anthropic-version"],
                                        expose_headers=["x-unillm-cost", "x-unillm-tokens", "x-unillm-cached",
                                                        "x-unillm-model", "x-unillm-rule", "x-unillm-ledger-id",
                                                        "x-unillm-requests"]))

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, HTTPException):
            err = HTTPError(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404
                            else None)
        else:
            err = gateway.http_error(exc)
        if err.status >= 500:
            log.error("%s %s -> %s %s", request.method, request.url.path, err.status, err.message)
        return error_response(err, gateway.scrub)

    routes = [
        Route("/v1/chat/completions", chat.completions, methods=["POST"]),
        Route("/v1/models", chat.models, methods=["GET"]),
        Route("/v1/embeddings", embeddings.embeddings, methods=["POST"]),
        Route("/v1/models/{model_id:path}", model_detail, methods=["GET"]),
        Route("/v1/messages", messages.create, methods=["POST"]),
        Route("/v1/responses", responses.create, methods=["POST"]),
        Route("/v1/usage", usage.ingest, methods=["POST"]),
        Route("/v1/usage/batch", usage.ingest_batch, methods=["POST"]),
        Route("/v1/analytics", analytics.endpoint, methods=["GET"]),
        Route("/v1/budgets", analytics.budgets, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/admin/keys", admin_keys, methods=["GET", "POST"]),
        Route("/admin/keys/{key_id}", admin_key, methods=["DELETE"]),
        Route("/admin/keys/{key_id}/rotate", admin_key_rotate, methods=["POST"]),
        Route("/admin/prices/{provider}/{model:path}", prices.endpoint, methods=["GET", "PUT"]),
        Route("/admin/provider-keys/{provider}/test", provider_keys.test_key, methods=["POST"]),
        Route("/dashboard", dashboard.endpoint, methods=["GET"]),
        Route("/dashboard/{page}", dashboard_pages.endpoint, methods=["GET"]),  # budgets, rules
        Route("/proxy/{path:path}", proxy.endpoint, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
        *admin.routes(),  # /admin/audit, /admin/budgets, /admin/rules, /admin/health
    ]
    if gateway.metrics is not None:  # [server.metrics] enabled
        from . import metrics
        routes.append(Route("/metrics", metrics.endpoint, methods=["GET"]))
    handlers = {Exception: on_error, HTTPException: on_error, HTTPError: on_error,
                errors.UnillmError: on_error}
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers,
                    lifespan=lifespan(gateway))
    app.state.gateway = gateway
    return app
