"""The Cohere adapter: unillm requests through the official ``cohere`` SDK's v2 chat.

The SDK is imported on first use. Each adapter owns its httpx clients (they
carry the profile's extra headers and timeout) and closes them in
``close``/``aclose``; the SDK's own retries are off, the Client retries.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from ... import errors
from ...telemetry import TRACE_HEADERS
from ...types import ChatRequest, ChatResponse, StreamChunk
from ..base import (
    Adapter,
    ErrorWhere,
    check_complete,
    error_for_status,
    error_message,
    parse_retry_after,
    require,
)
from . import convert, wire

if TYPE_CHECKING:
    from ...embeddings.types import EmbedRequest, Vectors


def _json(raw: Any) -> Any:
    """The JSON body of a ``with_raw_response`` result (its ``response`` is the httpx one)."""
    import json
    return json.loads(raw.response.content)


class CohereAdapter(Adapter):
    """Cohere's v2 chat API (``ClientV2.chat`` / ``chat_stream``)."""

    protocol = "cohere"

    def _make_client(self, async_: bool) -> Any:
        cohere = require("cohere")
        import httpx  # the cohere SDK's HTTP library, installed with it

        key = self.settings.resolved_api_key()
        if not key:
            where = f"set {self.settings.api_key_env} or " if self.settings.api_key_env else ""
            raise errors.AuthenticationError(f"no API key: {where}pass api_key in the provider settings",
                                             provider=self.provider)
        http_cls, sdk_cls = ((httpx.AsyncClient, cohere.AsyncClientV2) if async_
                             else (httpx.Client, cohere.ClientV2))
        http = http_cls(headers=self.settings.headers, timeout=self.settings.timeout, follow_redirects=True)
        setattr(self, "_http_async" if async_ else "_http_sync", http)
        client = sdk_cls(api_key=key, base_url=self.settings.base_url, timeout=self.settings.timeout,
                         max_retries=0, httpx_client=http, log_warning_experimental_features=False)
        client.unillm_http = http  # ours to close: one per event loop for the async client
        return client

    def _kwargs(self, request: ChatRequest, model: str, timeout: float | None) -> dict[str, Any]:
        """``chat`` kwargs; ``timeout``: this request's (``request_options``' ``timeout_in_seconds``,
        which every cohere 7.x reads)."""
        kwargs = convert.to_request(request, model, self.settings)
        if timeout is not None:
            kwargs["request_options"] = {**kwargs.get("request_options", {}), "timeout_in_seconds": timeout}
        if traced := TRACE_HEADERS.get():  # the attempt's span (telemetry = "otel"): W3C traceparent
            kwargs["request_options"] = {**kwargs.get("request_options", {}), "additional_headers": traced}
        return kwargs

    def _response(self, raw: Any, model: str) -> ChatResponse:
        """Our answer from the JSON body (`_json`)."""
        return convert.from_response(raw, self.provider, model=model)

    # ── calls ──
    # Calls and streams through the SDK's own HTTP client when this cohere has it in the shape we know (`wire`):
    # the SDK still authenticates and sends the request; the status is checked and the
    # SDK's typed errors raised as its raw client does, but neither our messages nor its
    # answer go through its models (they cost half of the SDK's time per call). Otherwise
    # the public raw client (``with_raw_response``), the answer read from its HTTP body.
    def complete(self, request: ChatRequest, model: str, timeout: float | None = None) -> ChatResponse:
        client, kwargs = self.sync_client(), self._kwargs(request, model, timeout)
        http = self._seam(client)
        if http is not None:
            body = wire.answer(http.request("v2/chat", **wire.chat_args(kwargs)))
        else:
            body = _json(client.with_raw_response.chat(**kwargs))
        return self._response(body, model)

    async def acomplete(self, request: ChatRequest, model: str, timeout: float | None = None) -> ChatResponse:
        client, kwargs = self.async_client(), self._kwargs(request, model, timeout)
        http = self._seam(client)
        if http is not None:
            body = wire.answer(await http.request("v2/chat", **wire.chat_args(kwargs)))
        else:
            body = _json(await client.with_raw_response.chat(**kwargs))
        return self._response(body, model)

    def _seam(self, client: Any) -> Any | None:
        """`wire.seam` of ``client``, looked up once per SDK client."""
        cached = getattr(client, "unillm_seam", False)
        if cached is False:
            cached = wire.seam(client)
            client.unillm_seam = cached
        return cached

    def embed(self, request: EmbedRequest, model: str, timeout: float | None = None) -> Vectors:
        from . import embed
        resp = self.sync_client().embed(**embed.to_kwargs(request, model, self.settings, timeout))
        return embed.from_response(resp, self.provider, model, len(request.input))

    async def aembed(self, request: EmbedRequest, model: str, timeout: float | None = None) -> Vectors:
        from . import embed
        resp = await self.async_client().embed(**embed.to_kwargs(request, model, self.settings, timeout))
        return embed.from_response(resp, self.provider, model, len(request.input))

    def stream_state(self, model: str) -> Any:
        return convert.StreamState(self.provider, model)

    def _stream(self, request: ChatRequest, model: str, state: convert.StreamState,
                timeout: float | None) -> Iterator[StreamChunk]:
        client, kwargs = self.sync_client(), self._kwargs(request, model, timeout)
        http = self._seam(client)
        with contextlib.ExitStack() as exit_stack:  # closed early too: the connection released
            if http is None:  # a cohere `wire` was not read against: its public stream
                events = client.chat_stream(**kwargs)
            else:  # its HTTP client, the events read as JSON without its models
                response = exit_stack.enter_context(http.stream("v2/chat", **wire.chat_args(kwargs, stream=True)))
                if not 200 <= response.status_code < 300:
                    response.read()
                    wire.answer(response)  # raises the SDK's exception for the status
                events = wire.events(response)
            exit_stack.callback(events.close)
            try:
                for event in events:
                    yield from state.feed(event)
            except Exception as exc:
                self._not_sse(exc, model)
                raise
        check_complete(state, self.provider, model, "its message-end event")

    async def _astream(self, request: ChatRequest, model: str, state: convert.StreamState,
                       timeout: float | None) -> AsyncIterator[StreamChunk]:
        client, kwargs = self.async_client(), self._kwargs(request, model, timeout)
        http = self._seam(client)
        async with contextlib.AsyncExitStack() as exit_stack:  # as `_stream`
            if http is None:
                events = client.chat_stream(**kwargs)
            else:
                response = await exit_stack.enter_async_context(
                    http.stream("v2/chat", **wire.chat_args(kwargs, stream=True)))
                if not 200 <= response.status_code < 300:
                    await response.aread()
                    wire.answer(response)
                events = wire.aevents(response)
            exit_stack.push_async_callback(events.aclose)
            try:
                async for event in events:
                    for chunk in state.feed(event):
                        yield chunk
            except Exception as exc:
                self._not_sse(exc, model)
                raise
        check_complete(state, self.provider, model, "its message-end event")

    def _not_sse(self, exc: Exception, model: str) -> None:
        """A 200 whose body is not an event stream (an HTML page from a proxy, say) is an answer
        we cannot read, not a broken connection: `ResponseError`, never retried. The SDK raises
        it as an ``httpx.TransportError`` subclass, so it is told apart here, where it is read."""
        sse_error = getattr(sys.modules.get("cohere.core.http_sse._exceptions"), "SSEError", None)
        if sse_error is not None and isinstance(exc, sse_error):
            raise errors.ResponseError(f"Cohere's stream is not server-sent events: {exc}",
                                       provider=self.provider, model=model) from exc

    # ── errors ──
    def translate_error(self, exc: BaseException, model: str) -> errors.ProviderError | None:
        """Cohere's ApiError family by HTTP status; httpx failures by class."""
        if isinstance(exc, errors.ProviderError):
            return exc
        require("cohere")
        import httpx
        from cohere.core.api_error import ApiError
        from cohere.core.parse_error import ParsingError

        where: ErrorWhere = {"provider": self.provider, "model": model}
        if isinstance(exc, ApiError):
            return self._api_error(exc, model)
        if isinstance(exc, ParsingError):
            return errors.ResponseError("Cohere answered a body the SDK could not parse",
                                        status_code=exc.status_code, **where)
        if isinstance(exc, httpx.TimeoutException):
            return errors.TimeoutError(f"no answer within {self.settings.timeout:g}s "
                                       f"({type(exc).__name__})", **where)
        if isinstance(exc, httpx.TransportError):
            return errors.ConnectionError(
                f"the connection to Cohere failed or broke off ({type(exc).__name__})", **where)
        return None

    def _api_error(self, exc: Any, model: str) -> errors.ProviderError:
        status, body = exc.status_code, exc.body
        if status is not None and 200 <= status < 300:
            return errors.ResponseError("Cohere answered a body that is not valid JSON",
                                        provider=self.provider, model=model, status_code=status)
        message = error_message(body, f"HTTP {status}")
        if status == 498:  # Cohere's "invalid token"
            return errors.AuthenticationError(message, provider=self.provider, model=model,
                                              status_code=status, body=body)
        headers = {str(k).lower(): v for k, v in (exc.headers or {}).items()}
        return error_for_status(status, message, provider=self.provider, model=model,
                                retry_after=parse_retry_after(headers), body=body)

    # ── lifecycle ──
    def close(self) -> None:
        http = getattr(self, "_http_sync", None)
        if http is not None:
            http.close()
            self._sync_client = self._http_sync = None

    async def aclose(self) -> None:
        self.close()
        client = self._own_async_client()
        http = getattr(client, "unillm_http", None)
        if http is not None:
            await http.aclose()
        self._http_async = None
