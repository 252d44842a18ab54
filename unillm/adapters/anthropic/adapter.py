"""The Anthropic Messages API through the official ``anthropic`` SDK (imported on first use).

One attempt per call, SDK retries off: the Client retries. Calls and streams go through the
SDK's public raw-response API (``messages.with_raw_response.create``): the SDK still builds,
authenticates and sends the request, checks the status and raises its typed errors (an
``error`` event inside a stream too), and decodes the stream's frames (SSE; AWS event-stream
on Bedrock); what it skips is parsing the body, or each event, into its models, which
`StreamState` / `from_response` would only read back (measured: ~35 µs a stream chunk).
Closing our generator closes the SDK stream and releases the connection.
JSON schemas for structured output go through the SDK's ``transform_schema``
(what its own ``messages.parse`` does), so a pydantic model's schema is accepted.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ... import errors
from ...telemetry import TRACE_HEADERS
from ...types import ChatRequest, ChatResponse, StreamChunk
from ..base import (
    Adapter,
    ErrorWhere,
    check_complete,
    error_for_status,
    error_message,
    json_body,
    parse_retry_after,
    require,
)
from .convert import StreamState, from_response, to_request

# status implied by an error event inside a 200 stream (``{"type": "error", "error": {"type": ...}}``)
_STATUS_BY_ERROR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}


class AnthropicAdapter(Adapter):
    """Anthropic's Messages API (``POST /v1/messages``)."""

    protocol = "anthropic"

    def _make_client(self, async_: bool) -> Any:
        anthropic = require("anthropic")
        cls = anthropic.AsyncAnthropic if async_ else anthropic.Anthropic
        client = cls(api_key=self.settings.resolved_api_key(), base_url=self.settings.base_url,
                     timeout=self.settings.timeout, max_retries=0,
                     default_headers=self.settings.headers or None)
        # without a key the SDK falls back to its own chain (auth token, profiles, federation)
        if client.api_key is None and client.auth_token is None and client.credentials is None:
            raise errors.AuthenticationError(
                f"no API key: set {self.settings.api_key_env or 'an API key env var'} or "
                f"providers.{self.provider}.api_key", provider=self.provider)
        return client

    def _kwargs(self, request: ChatRequest, model: str, timeout: float | None) -> dict[str, Any]:
        """``messages.create`` kwargs; ``timeout``: this request's (the SDK's ``timeout=``)."""
        kwargs = to_request(request, model, self.settings)
        if timeout is not None:
            kwargs["timeout"] = timeout
        traced = TRACE_HEADERS.get()
        if traced:  # the attempt's span (telemetry = "otel"): W3C traceparent to the vendor
            kwargs["extra_headers"] = {**traced, **kwargs.get("extra_headers", {})}
        fmt = kwargs.get("output_config", {}).get("format")
        if fmt is None:
            return kwargs
        try:  # the API wants closed objects and only the constraints it supports
            schema = require("anthropic").transform_schema(fmt["schema"])
        except ValueError as exc:
            raise errors.InvalidRequestError(f"{self.provider} cannot use this JSON schema: {exc}",
                                             param="response_format") from None
        kwargs["output_config"] = {**kwargs["output_config"], "format": {**fmt, "schema": schema}}
        return kwargs

    # ── calls ──
    def complete(self, request: ChatRequest, model: str, timeout: float | None = None) -> ChatResponse:
        raw = self.sync_client().messages.with_raw_response.create(**self._kwargs(request, model, timeout))
        return from_response(json_body(raw), self.provider)

    async def acomplete(self, request: ChatRequest, model: str, timeout: float | None = None) -> ChatResponse:
        raw = await self.async_client().messages.with_raw_response.create(**self._kwargs(request, model, timeout))
        return from_response(json_body(raw), self.provider)

    def stream_state(self, model: str) -> Any:
        return StreamState(self.provider)

    def _stream(self, request: ChatRequest, model: str, state: StreamState,
                timeout: float | None) -> Iterator[StreamChunk]:
        raw = self.sync_client().messages.with_raw_response.create(**self._kwargs(request, model, timeout),
                                                                   stream=True)
        sdk_stream = raw.parse(to=require("anthropic").Stream[object])  # events as JSON dicts
        try:
            for event in sdk_stream:
                yield from state.feed(event)
            yield from self._end(state, model)
        finally:
            sdk_stream.close()  # also on GeneratorExit: releases the connection

    async def _astream(self, request: ChatRequest, model: str, state: StreamState,
                       timeout: float | None) -> AsyncIterator[StreamChunk]:
        raw = await self.async_client().messages.with_raw_response.create(
            **self._kwargs(request, model, timeout), stream=True)
        sdk_stream = await raw.parse(to=require("anthropic").AsyncStream[object])
        try:
            async for event in sdk_stream:
                for chunk in state.feed(event):
                    yield chunk
            for chunk in self._end(state, model):
                yield chunk
        finally:
            await sdk_stream.close()

    def _end(self, state: StreamState, model: str) -> list[StreamChunk]:
        """After the last event: nothing more after message_stop; the closing chunk when only
        message_delta (with the stop reason) arrived; else the stream was not finished."""
        check_complete(state, self.provider, model, "a stop reason")
        return [] if state.done else [state.finish()]

    # ── errors ──
    def translate_error(self, exc: BaseException, model: str) -> errors.ProviderError | None:
        """SDK and transport exceptions -> ours, by class and HTTP status."""
        if isinstance(exc, errors.ProviderError):
            return exc
        anthropic = require("anthropic")
        timeouts, transport = _http_errors()
        where: ErrorWhere = {"provider": self.provider, "model": model}
        if isinstance(exc, (anthropic.APITimeoutError, *timeouts)):
            return errors.TimeoutError(f"no answer within {self.settings.timeout:g}s", **where)
        if isinstance(exc, anthropic.APIStatusError):
            return self._status_error(exc, model)
        if isinstance(exc, anthropic.APIResponseValidationError):
            return errors.ResponseError(exc.message, status_code=exc.status_code, **where)
        if isinstance(exc, (anthropic.APIConnectionError, *transport)):
            return errors.ConnectionError(f"{type(exc).__name__}: {exc}", **where)
        if isinstance(exc, json.JSONDecodeError):
            return errors.ResponseError(f"the answer is not valid JSON: {exc}", **where)
        if isinstance(exc, anthropic.CredentialsError):
            return errors.AuthenticationError(str(exc), **where)
        if isinstance(exc, anthropic.AnthropicError):
            return errors.ProviderError(f"{type(exc).__name__}: {exc}", **where)
        return None

    def _status_error(self, exc: Any, model: str) -> errors.ProviderError:
        body = exc.body
        status = exc.status_code
        if status < 400:  # an error event inside a stream that began with 200
            status = _STATUS_BY_ERROR_TYPE.get(exc.type or "", 500)
        return error_for_status(status, error_message(body, exc.message), provider=self.provider,
                                model=model, retry_after=parse_retry_after(exc.response.headers),
                                body=body)


def _http_errors() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """Timeout and transport exception classes of the HTTP libraries the SDK may have loaded.

    Raised unwrapped while a stream is being read (a read timeout, a cut connection).
    """
    libs = [sys.modules[name] for name in ("httpx2", "httpx") if name in sys.modules]
    return (tuple(lib.TimeoutException for lib in libs), tuple(lib.TransportError for lib in libs))
