"""The OpenAI Chat Completions wire protocol, through the official ``openai`` SDK.

Serves OpenAI and every OpenAI-compatible vendor profile (``adapter = "openai"``):
what a vendor accepts comes from ``settings.capabilities``, never from its name.
The SDK is imported on first use; its own retries are off (the Client retries).
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ... import errors
from ...telemetry import TRACE_HEADERS
from ...types import ChatRequest, ChatResponse, StreamChunk
from ..base import Adapter, ErrorWhere, check_complete, error_for_status, error_message, parse_retry_after, require
from . import convert

if TYPE_CHECKING:
    from ...embeddings.types import EmbedRequest, Vectors

# create()'s keyword arguments that are request options, not body fields
_OPTIONS = (("extra_headers", "headers"), ("extra_query", "params"), ("extra_body", "extra_json"),
            ("timeout", "timeout"))


def _post_args(kwargs: dict[str, Any], timeout: float | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """SDK ``create()`` kwargs as ``client.post``'s body and request options (``timeout``: this
    request's, a request option as create()'s ``timeout=`` is)."""
    options: dict[str, Any] = {"security": {"bearer_auth": True}}
    for name, option in _OPTIONS:
        if name in kwargs:
            options[option] = kwargs.pop(name)
    if timeout is not None:
        options["timeout"] = timeout
    traced = TRACE_HEADERS.get()
    if traced:  # the attempt's span (telemetry = "otel"): W3C traceparent to the vendor
        options["headers"] = {**traced, **options.get("headers", {})}
    return kwargs, options


# servers on this machine (Ollama, vLLM) ignore the key; the SDK insists on one
_LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_NO_KEY = "unillm-no-key"


class OpenAIAdapter(Adapter):
    """``chat.completions.create`` for OpenAI and OpenAI-compatible vendors."""

    protocol = "openai"

    def _make_client(self, async_: bool) -> Any:
        openai = require("openai")
        cls = openai.AsyncOpenAI if async_ else openai.OpenAI
        client = cls(api_key=self._api_key(), base_url=self.settings.base_url,
                     timeout=self.settings.timeout, max_retries=0,
                     default_headers=dict(self.settings.headers) or None)
        if not self.settings.capabilities.openai_organization:  # OPENAI_ORG_ID is OpenAI's business
            client.organization = client.project = None
        return client

    def _api_key(self) -> str:
        """The key, never logged; a placeholder for local servers; else a clear error.

        Always explicit, so the SDK never falls back to ``OPENAI_API_KEY`` and
        sends OpenAI's key to another vendor.
        """
        key = self.settings.resolved_api_key()
        if key:
            return key
        if urlsplit(self.settings.base_url or "").hostname in _LOCAL_HOSTS:
            return _NO_KEY
        where = f"set {self.settings.api_key_env} or " if self.settings.api_key_env else ""
        raise errors.AuthenticationError(f"no API key: {where}pass api_key in providers.{self.provider}",
                                         provider=self.provider)

    # ── calls ──
    # Calls go through the SDK's public ``client.post`` (its documented way to make a request
    # it has no method for): the SDK still authenticates, sends, checks the status, decodes
    # server-sent events, raises its typed errors (an error event inside a stream too). What
    # it skips is create()'s request transform and its response/chunk model parse, which
    # change nothing in a chat body we already built as JSON and which our converter would
    # redo (measured: ~0.3 ms a call, and ~12 µs a stream chunk). Chunks arrive as dicts.
    def complete(self, request: ChatRequest, model: str, timeout: float | None = None) -> ChatResponse:
        body, options = _post_args(convert.to_request(request, model, self.settings), timeout)
        raw = self.sync_client().post("/chat/completions", body=body, options=options, cast_to=bytes)
        return convert.from_response(json.loads(raw), self.provider)

    async def acomplete(self, request: ChatRequest, model: str, timeout: float | None = None) -> ChatResponse:
        body, options = _post_args(convert.to_request(request, model, self.settings), timeout)
        raw = await self.async_client().post("/chat/completions", body=body, options=options, cast_to=bytes)
        return convert.from_response(json.loads(raw), self.provider)

    def embed(self, request: EmbedRequest, model: str, timeout: float | None = None) -> Vectors:
        from . import embed
        body, options = _post_args(embed.to_body(request, model, self.settings), timeout)
        raw = self.sync_client().post("/embeddings", body=body, options=options, cast_to=bytes)
        return embed.from_body(json.loads(raw), self.provider, model, len(request.input))

    async def aembed(self, request: EmbedRequest, model: str, timeout: float | None = None) -> Vectors:
        from . import embed
        body, options = _post_args(embed.to_body(request, model, self.settings), timeout)
        raw = await self.async_client().post("/embeddings", body=body, options=options, cast_to=bytes)
        return embed.from_body(json.loads(raw), self.provider, model, len(request.input))

    def stream_state(self, model: str) -> Any:
        return convert.StreamState(self.provider)

    def _stream(self, request: ChatRequest, model: str, state: convert.StreamState,
                timeout: float | None) -> Iterator[StreamChunk]:
        body, options = _post_args(convert.to_request(request, model, self.settings, stream=True), timeout)
        sdk_stream = self.sync_client().post("/chat/completions", body=body, options=options,
                                             cast_to=object, stream=True,
                                             stream_cls=require("openai").Stream[object])
        try:
            for event in sdk_stream:
                yield from state.feed(event)
            check_complete(state, self.provider, model, "a finish reason")
            yield from state.finish()
        finally:  # also on GeneratorExit: release the connection
            sdk_stream.close()

    async def _astream(self, request: ChatRequest, model: str, state: convert.StreamState,
                       timeout: float | None) -> AsyncIterator[StreamChunk]:
        body, options = _post_args(convert.to_request(request, model, self.settings, stream=True), timeout)
        sdk_stream = await self.async_client().post("/chat/completions", body=body, options=options,
                                                    cast_to=object, stream=True,
                                                    stream_cls=require("openai").AsyncStream[object])
        try:
            async for event in sdk_stream:
                for chunk in state.feed(event):
                    yield chunk
            check_complete(state, self.provider, model, "a finish reason")
            for chunk in state.finish():
                yield chunk
        finally:
            await sdk_stream.close()

    # ── errors ──
    def translate_error(self, exc: BaseException, model: str) -> errors.ProviderError | None:
        """SDK exception -> ours, by class and HTTP status; the API key is scrubbed."""
        if isinstance(exc, errors.ProviderError):
            return exc
        if isinstance(exc, json.JSONDecodeError):
            return errors.ResponseError(f"the vendor answered malformed JSON ({exc.msg})",
                                        provider=self.provider, model=model)
        openai = sys.modules.get("openai")  # not imported: cannot be one of its errors
        return None if openai is None else self._translate_sdk(openai, exc, model)

    def _translate_sdk(self, openai: Any, exc: BaseException, model: str) -> errors.ProviderError | None:
        where: ErrorWhere = {"provider": self.provider, "model": model}
        if isinstance(exc, openai.APITimeoutError):
            return errors.TimeoutError(f"no answer within {self.settings.timeout:g}s", **where)
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__ or exc.__context__
            detail = f" ({type(cause).__name__}: {cause})" if cause else ""
            return errors.ConnectionError(self._scrub(exc.message + detail), **where)
        if isinstance(exc, openai.APIResponseValidationError):
            return errors.ResponseError(self._scrub(exc.message), status_code=exc.status_code,
                                        body=exc.body, **where)
        if isinstance(exc, openai.APIStatusError):
            return self._status_error(exc, model)
        if isinstance(exc, openai.APIError):  # an error event inside a stream
            return self._classified(None, exc.body, exc.message, model, None)
        if isinstance(exc, openai.OpenAIError):
            return errors.ProviderError(self._scrub(str(exc)), **where)
        return None

    def _status_error(self, exc: Any, model: str) -> errors.ProviderError:
        retry_after = parse_retry_after(getattr(exc.response, "headers", None))
        return self._classified(exc.status_code, exc.body, exc.message, model, retry_after)

    def _classified(self, status: int | None, body: Any, fallback: str, model: str,
                    retry_after: float | None) -> errors.ProviderError:
        message = self._scrub(error_message(body, fallback))
        err = error_for_status(status, message, provider=self.provider, model=model,
                               retry_after=retry_after, body=body)
        code = body.get("code") if isinstance(body, dict) else None
        if code == "context_length_exceeded" and not isinstance(err, errors.ContextWindowExceededError):
            err = errors.ContextWindowExceededError(message, provider=self.provider, model=model,
                                                    status_code=status, body=body)
        return err

    def _scrub(self, text: str) -> str:
        return self.redactor().text(text)
