"""Where `observe()` sees requests: each HTTP library's transport seam, patched once.

* httpx (and httpx2): ``HTTPTransport.handle_request`` and ``AsyncHTTPTransport.handle_async_request``
  (every ``httpx.Client`` / ``AsyncClient`` with its default transport, so every official
  vendor SDK); the response's byte stream is wrapped, so a body read lazily (a stream the
  application iterates) is metered when it ends or is closed.
* requests: ``HTTPAdapter.send`` (every ``Session``); a ``stream=True`` body when it is
  read to its end or the response is closed.
* aiohttp: ``ClientSession._request``, its one request path; the body when ``read()``
  (``json()``, ``text()``) returns, else what is known when the response is released.

A library that is not installed is skipped. Requests unillm's own `Client` makes are
never metered here (they are recorded by the client: `OWN`). Installing twice patches
once; `uninstall` puts every original back.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from .. import errors
from .apis import Exchange
from .meter import MAX_CAPTURE, Meter, Pending
from .own import OWN

#: the meter requests are given to, or None (then every hook passes through)
_METER: list[Meter | None] = [None]
#: (owner, attribute, original) of every patch in place
_PATCHES: list[tuple[Any, str, Any]] = []


def install(meter: Meter) -> None:
    _METER[0] = meter
    if _PATCHES:
        return
    for name, patch in (("httpx", _patch_httpx), ("httpx2", _patch_httpx), ("requests", _patch_requests),
                        ("aiohttp", _patch_aiohttp)):
        if importlib.util.find_spec(name) is not None:
            patch(name)


def uninstall() -> None:
    _METER[0] = None
    while _PATCHES:
        owner, attr, original = _PATCHES.pop()
        setattr(owner, attr, original)


def installed() -> bool:
    return bool(_PATCHES)


def _patch(owner: Any, attr: str, make: Callable[[Any], Any]) -> None:
    original = getattr(owner, attr)
    _PATCHES.append((owner, attr, original))
    setattr(owner, attr, make(original))


def _begin(method: str, scheme: str, host: str, port: int | None, path: str, url: object,
           headers: Any, body: Any) -> tuple[Meter, Pending] | None:
    """The pending row of a request to meter (not yet admitted), or None. ``url`` and
    ``headers`` are the library's own objects: the exchange turns them into text only if
    something reads them."""
    meter = _METER[0]
    if meter is None or meter.idle or OWN.get():
        return None
    target = meter.target(method, scheme, host or "", port, path)
    if target is None:
        return None
    raw = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else b""
    return meter, meter.start(target, Exchange(method, url, host or "", port, path, headers, raw))


def _admitted(begun: tuple[Meter, Pending] | None) -> tuple[Meter, Pending] | None:
    if begun is not None:
        begun[0].admit(begun[1])
    return begun


async def _aadmitted(begun: tuple[Meter, Pending] | None) -> tuple[Meter, Pending] | None:
    """Admission off the event loop (a budget's transaction is blocking database work)."""
    if begun is not None and begun[0].client.budgets:
        await begun[0].client.ledger.store.arun(begun[0].admit, begun[1])
    return begun


class _Capture:
    """The response body as it passes, kept up to `MAX_CAPTURE` bytes, priced at its end."""

    def __init__(self, meter: Meter, pending: Pending, decode: Callable[[bytes], bytes] | None = None) -> None:
        self.meter, self.pending, self.decode = meter, pending, decode
        self.parts: list[bytes] = []
        self.size = 0

    def keep(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size <= MAX_CAPTURE:
            self.parts.append(chunk)

    async def aend(self, error: BaseException | None = None) -> None:
        """`end` off the event loop: the row is a blocking database write."""
        if not self.pending.done:
            await self.meter.client.ledger.store.arun(self.end, error)

    def end(self, error: BaseException | None = None) -> None:
        if self.pending.done:
            return
        body = b"".join(self.parts)
        if self.decode is not None:
            try:
                body = self.decode(body)
            except Exception:  # noqa: BLE001 - a body cut mid-way does not decompress; price what is there
                body = b""
        self.pending.exchange.response_body = body
        self.meter.finish(self.pending, error)


# ── httpx ───────────────────────────────────────────────────────────────────

def _patch_httpx(name: str) -> None:
    """httpx, or httpx2 (its successor, which the openai SDK now uses): the same seams."""
    httpx = importlib.import_module(name)

    def decoder(headers: Any) -> Callable[[bytes], bytes] | None:
        encoding = headers.get("content-encoding")
        if not encoding or encoding == "identity":
            return None
        return lambda raw: httpx.Response(200, headers={"content-encoding": encoding},
                                          stream=httpx.ByteStream(raw)).read()

    def request_parts(request: Any) -> tuple[Any, ...]:
        url = request.url
        try:
            body = request.content
        except httpx.RequestNotRead:  # a streamed upload: not read here
            body = b""
        return (request.method, url.scheme, url.host, url.port, url.raw_path.partition(b"?")[0].decode("ascii"),
                url, request.headers, body)

    class SyncTee(httpx.SyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, capture: _Capture) -> None:
            self.inner, self.capture = inner, capture

        def __iter__(self) -> Iterator[bytes]:
            try:
                for chunk in self.inner:
                    self.capture.keep(chunk)
                    yield chunk
            except BaseException as exc:
                self.capture.end(exc)
                raise
            self.capture.end()

        def close(self) -> None:
            try:
                self.inner.close()
            finally:
                self.capture.end()

    class AsyncTee(httpx.AsyncByteStream):  # type: ignore[name-defined,misc]
        def __init__(self, inner: Any, capture: _Capture) -> None:
            self.inner, self.capture = inner, capture

        async def __aiter__(self) -> AsyncIterator[bytes]:
            try:
                async for chunk in self.inner:
                    self.capture.keep(chunk)
                    yield chunk
            except BaseException as exc:
                await self.capture.aend(exc)
                raise
            await self.capture.aend()

        async def aclose(self) -> None:
            try:
                await self.inner.aclose()
            finally:
                await self.capture.aend()

    def wrap(response: Any, meter: Meter, pending: Pending, tee: Any) -> Any:
        ex = pending.exchange
        ex.status = response.status_code
        ex.response_headers = response.headers
        response.stream = tee(response.stream, _Capture(meter, pending, decoder(response.headers)))
        return response

    def sync(original: Any) -> Any:
        def handle_request(self: Any, request: Any) -> Any:
            try:
                begun = _admitted(_begin(*request_parts(request)))
            except errors.BudgetExceededError as err:
                return _refusal(httpx, request, err)
            if begun is None:
                return original(self, request)
            meter, pending = begun
            try:
                response = original(self, request)
            except BaseException as exc:
                meter.finish(pending, exc)
                raise
            return wrap(response, meter, pending, SyncTee)
        return handle_request

    def async_(original: Any) -> Any:
        async def handle_async_request(self: Any, request: Any) -> Any:
            try:
                begun = await _aadmitted(_begin(*request_parts(request)))
            except errors.BudgetExceededError as err:
                return _refusal(httpx, request, err)
            if begun is None:
                return await original(self, request)
            meter, pending = begun
            try:
                response = await original(self, request)
            except BaseException as exc:
                await meter.client.ledger.store.arun(meter.finish, pending, exc)
                raise
            return wrap(response, meter, pending, AsyncTee)
        return handle_async_request

    _patch(httpx.HTTPTransport, "handle_request", sync)
    _patch(httpx.AsyncHTTPTransport, "handle_async_request", async_)


def _refusal(httpx: Any, request: Any, err: errors.BudgetExceededError) -> Any:
    """A budget refusal, as the vendor SDKs that retry (openai, anthropic) can take it:
    their ``x-should-retry: false`` 402 becomes their typed status error, once, carrying our
    message. Any other caller gets the `BudgetExceededError` itself."""
    if not any(k.lower().startswith("x-stainless-") for k in request.headers):
        raise err
    body = {"error": {"message": str(err), "type": "budget_exceeded", "code": "budget_exceeded"},
            "type": "error"}
    return httpx.Response(402, headers={"x-should-retry": "false", "content-type": "application/json"},
                          content=json.dumps(body).encode(), request=request)


# ── requests ────────────────────────────────────────────────────────────────

def _patch_requests(_: str) -> None:
    from urllib.parse import urlsplit

    import requests.adapters

    def make(original: Any) -> Any:
        def send(self: Any, request: Any, stream: bool = False, *args: Any, **kwargs: Any) -> Any:
            parts = urlsplit(request.url)
            begun = _admitted(_begin(request.method or "GET", parts.scheme, parts.hostname or "", parts.port,
                                     parts.path, request.url, request.headers, request.body))
            if begun is None:
                return original(self, request, stream, *args, **kwargs)
            meter, pending = begun
            try:
                response = original(self, request, stream, *args, **kwargs)
            except BaseException as exc:
                meter.finish(pending, exc)
                raise
            ex = pending.exchange
            ex.status = response.status_code
            ex.response_headers = response.headers
            capture = _Capture(meter, pending)
            if not stream:  # what Session.send does next anyway: read it all
                try:
                    capture.keep(response.content)
                finally:
                    capture.end()
                return response
            raw_stream, raw_close = response.raw.stream, response.close

            def tee(*a: Any, **kw: Any) -> Iterator[bytes]:
                try:
                    for chunk in raw_stream(*a, **kw):
                        capture.keep(chunk)
                        yield chunk
                except BaseException as exc:
                    capture.end(exc)
                    raise
                capture.end()

            def close() -> None:
                try:
                    raw_close()
                finally:
                    capture.end()
            response.raw.stream = tee
            response.close = close
            return response
        return send

    _patch(requests.adapters.HTTPAdapter, "send", make)


# ── aiohttp ─────────────────────────────────────────────────────────────────

def _patch_aiohttp(_: str) -> None:
    import aiohttp
    from yarl import URL

    def make(original: Any) -> Any:
        async def _request(self: Any, method: str, str_or_url: Any, *args: Any, **kwargs: Any) -> Any:
            url = str_or_url if isinstance(str_or_url, URL) else URL(str_or_url)
            if self._base_url is not None and not url.is_absolute():
                url = self._base_url.join(url)
            body = kwargs.get("data")
            if kwargs.get("json") is not None:
                body = json.dumps(kwargs["json"]).encode()
            begun = await _aadmitted(_begin(
                method.upper(), url.scheme, url.host or "", url.explicit_port, url.path, str(url),
                {**dict(self.headers), **dict(kwargs.get("headers") or {})},
                body if isinstance(body, (bytes, str)) else b""))
            if begun is None:
                return await original(self, method, str_or_url, *args, **kwargs)
            meter, pending = begun
            try:
                response = await original(self, method, str_or_url, *args, **kwargs)
            except BaseException as exc:
                await meter.client.ledger.store.arun(meter.finish, pending, exc)
                raise
            ex = pending.exchange
            ex.status = response.status
            ex.response_headers = response.headers
            capture = _Capture(meter, pending)
            read, release = response.read, response.release

            async def read_all() -> bytes:
                try:
                    data: bytes = await read()
                except BaseException as exc:
                    await capture.aend(exc)
                    raise
                capture.keep(data)
                await capture.aend()
                return data

            def release_all() -> Any:
                try:
                    return release()
                finally:
                    capture.end()
            response.read, response.release = read_all, release_all
            return response
        return _request

    _patch(aiohttp.ClientSession, "_request", make)
