"""What a client may send the gateway: how many at once, body size, body read time, JSON shape.

`Limits` is the gateway's one pure ASGI middleware (each layer is a coroutine every step
of every request passes through, `bench/bench_gateway.py`). For every HTTP request, in order:

* a place in the process's `capacity.Capacity` (``/health`` excepted): at most
  ``max_concurrent_requests`` at once, then a bounded, timed queue, then 503;
* a ``Content-Length`` above ``max_body_bytes`` is refused (413) before one byte of
  the body is read; a body without one (chunked) is counted as it arrives and
  refused as soon as it passes the limit, so no request ever holds more than
  ``max_body_bytes`` plus one chunk in memory;
* the bearer key is verified once (`keys.KeyStore.cached`, or on the ledger's threads
  when this process has no fresh answer) and the answer put in the scope (`VERIFIED`)
  for `Gateway.authenticate`;
* the body must arrive within ``body_timeout`` seconds of the request (408; timed by
  `unillm.deadline`, one timer for every waiting request, not one each);
* both refusals carry ``Connection: close``: the rest of the body is never read;
* a body the server has wholly received (`BODY_RECEIVED`, from `unillm.server.protocol`:
  nearly every request, by the time its app runs) is passed on untouched: no timer, no count;
* the per-key concurrency leases the request takes (`ratelimit.Limiter.aadmit`) are
  released when its response, a stream included, is over, however it ends; then its place.

The header read timeout lives below ASGI, in `unillm.server.protocol`.
`parse_json` turns a body into JSON or a 400: strict UTF-8, no lone surrogates
(``"\\ud800"``), nesting at most ``max_json_depth`` deep. The two checks that need
a walk over the parsed value run only when a cheap scan of the text says they
could fail, so an ordinary body costs one decode and one ``json.loads``.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from typing import Any

from ..deadline import within
from .capacity import EXEMPT, Capacity
from .keys import KeyStore, bearer
from .ratelimit import HELD, Limiter
from .wire import HTTPError, error_response

CLOSE = {"connection": "close"}
#: scope extension set by `unillm.server.protocol`: a callable giving the size of the body
#: bytes the server holds once the whole body has arrived, None until then
BODY_RECEIVED = "unillm.body_received"
#: scope key: ``(secret, ApiKey | None)``, what `KeyStore.verify` answered for the request's
#: bearer key (set by `Limits`, read by `Gateway.authenticate`)
VERIFIED = "unillm.verified_key"


def _first_values(headers: Any) -> dict[bytes, bytes]:
    """Header name -> its first value (as Starlette's ``request.headers`` reads them)."""
    return dict(reversed(headers if isinstance(headers, list) else list(headers)))


def too_large(limit: int) -> HTTPError:
    return HTTPError(413, f"the request body is larger than this gateway accepts ({limit} bytes; "
                     "[server] max_body_bytes)", code="request_too_large")


def too_slow(seconds: float, what: str) -> HTTPError:
    return HTTPError(408, f"the request {what} did not arrive within {seconds:g} s "
                     f"([server] {what}_timeout)", code="request_timeout")


class Limits:
    """Capacity, body size, body read time and the bearer key's lookup for every HTTP request
    of ``app``; with ``limiter``, the concurrency leases each request took are released when
    it is over."""

    def __init__(self, app: Any, *, max_body_bytes: int, body_timeout: float,
                 limiter: Limiter | None = None, capacity: Capacity | None = None,
                 keys: KeyStore | None = None) -> None:
        self.app, self.max_body, self.body_timeout = app, max_body_bytes, body_timeout
        self.limiter, self.capacity, self.keys = limiter, capacity, keys

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        capacity = self.capacity if scope["path"] not in EXEMPT else None
        if capacity is not None and not capacity.take():
            err = await capacity.wait()
            if err is not None:
                await error_response(err)(scope, receive, send)
                return
        try:
            headers = _first_values(scope["headers"])
            length = headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > self.max_body:
                await _refuse(too_large(self.max_body), scope, receive, send)
                return
            auth = headers.get(b"authorization")
            if auth is not None and capacity is not None and self.keys is not None:
                await self._verify(scope, auth)
            received = scope.get("extensions", {}).get(BODY_RECEIVED)
            rest = received() if received is not None else None
            if rest is None or rest > self.max_body:  # the body is not all here (or too big)
                receive = self._guard(receive, received)
            if self.limiter is None:
                await self.app(scope, receive, send)
                return
            held: list[tuple[Any, str]] = []
            token = HELD.set(held)
            try:
                await self.app(scope, receive, send)
            finally:
                HELD.reset(token)
                if held:
                    await self.limiter.arelease(held)
        finally:
            if capacity is not None:
                capacity.release()

    async def _verify(self, scope: dict[str, Any], authorization: bytes) -> None:
        """The bearer key's `KeyStore.verify` answer into ``scope[VERIFIED]`` (read off the loop
        when not in memory; a failed read is left to the handler, which reports it)."""
        assert self.keys is not None
        secret = bearer(authorization.decode("latin-1"))
        if secret is None:
            return
        known, key = self.keys.cached(secret)
        if not known:
            try:
                key = await self.keys.averify(secret)
            except Exception:  # noqa: BLE001 - the handler's own lookup reports it
                return
        scope[VERIFIED] = (secret, key)

    def _guard(self, receive: Any, received: Callable[[], int | None] | None = None) -> Any:
        """``receive`` counting body bytes and bounded in time until the body has arrived.
        ``received``: the server's count of the body bytes it holds once all have arrived
        (None before): then the rest is read with no timer and no count."""
        limit, seconds = self.max_body, self.body_timeout
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        state = {"seen": 0, "done": False}

        async def guarded() -> Any:
            if state["done"]:
                return await receive()
            rest = received() if received is not None else None
            if rest is not None and state["seen"] + rest <= limit:  # all here, within the limit
                state["done"] = True
                return await receive()
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise _closing(too_slow(seconds, "body"))
            try:
                if sys.version_info >= (3, 11):  # no timer per request (`unillm.deadline`)
                    message = await within(receive(), remaining)
                else:  # pragma: no cover - Python 3.10
                    message = await asyncio.wait_for(receive(), remaining)
            except asyncio.TimeoutError:
                raise _closing(too_slow(seconds, "body")) from None
            if message["type"] != "http.request":
                state["done"] = True
                return message
            state["seen"] += len(message.get("body", b""))
            if state["seen"] > limit:
                raise _closing(too_large(limit))
            if not message.get("more_body", False):
                state["done"] = True
            return message

        return guarded


def _closing(err: HTTPError) -> HTTPError:
    err.headers = CLOSE
    return err


async def _refuse(err: HTTPError, scope: Any, receive: Any, send: Any) -> None:
    response = error_response(err)
    response.headers.update(CLOSE)
    await response(scope, receive, send)


# ── JSON bodies ──────────────────────────────────────────────────────────────

def parse_json(raw: bytes, max_depth: int) -> Any:
    """The JSON value of a request body (None when empty), or a 400 saying what is wrong."""
    if not raw:
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HTTPError(400, f"the request body is not valid UTF-8 (byte {exc.start})",
                        code="invalid_encoding") from None
    try:
        value = json.loads(text)
    except RecursionError:
        raise _too_deep(max_depth) from None
    except ValueError as exc:
        raise HTTPError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    surrogates = "\\ud" in text or "\\uD" in text  # only an escape can make one
    if surrogates or text.count("[") + text.count("{") > max_depth:
        _walk(value, max_depth, surrogates)
    return value


def _too_deep(max_depth: int) -> HTTPError:
    return HTTPError(400, f"the request body nests JSON deeper than {max_depth} levels "
                     "([server] max_json_depth)", code="json_too_deep")


def _walk(value: Any, max_depth: int, strings: bool) -> None:
    """Depth of every container, and (when ``strings``) every string encodes as UTF-8."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            if strings:
                for k in node:
                    _text(k)
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            if strings and isinstance(node, str):
                _text(node)
            continue
        if depth > max_depth:
            raise _too_deep(max_depth)
        for child in children:
            if isinstance(child, (dict, list)) or (strings and isinstance(child, str)):
                stack.append((child, depth + 1))


def _text(s: str) -> None:
    if s.isascii():
        return
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        raise HTTPError(400, "the request body holds a lone UTF-16 surrogate escape (such as "
                        "\\ud800), which is no character", code="invalid_encoding") from None


__all__ = ["BODY_RECEIVED", "VERIFIED", "Limits", "parse_json", "too_large", "too_slow"]
