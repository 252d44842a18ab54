"""The google wire protocol (Gemini Developer API) through the official google-genai SDK.

One attempt per call: SDK retries and automatic stream continuation are off, the
Client retries. The SDK is imported on first use, never at ``import unillm``.
"""

from __future__ import annotations

import contextvars
import importlib
import json
import math
import re
import sys
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from ... import errors
from ...telemetry import TRACE_HEADERS
from ...types import ChatRequest, ChatResponse, StreamChunk
from ..base import Adapter, ErrorWhere, check_complete, error_for_status, error_message, parse_retry_after, require
from . import convert, wire

if TYPE_CHECKING:
    from ...embeddings.types import EmbedRequest, Vectors

_RETRY_DELAY = re.compile(r"^\s*([0-9.]+)s\s*$")

# The SDK's async stream is a chain of nested async generators; closing the outer one
# leaves the HTTP response open until garbage collection. An httpx response hook
# hands each streaming response to the astream that is waiting for it, which closes it.
_OPEN_RESPONSES: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
    "unillm_google_open_responses", default=None)


async def _remember_response(response: Any) -> None:
    bucket = _OPEN_RESPONSES.get()
    if bucket is not None:
        bucket.append(response)


def _async_args() -> dict[str, Any]:
    """httpx for the async side too, whatever else is installed: with aiohttp present the SDK
    would switch to it unless given a transport (its errors and stream closing are not the
    ones handled here). The transport is of the httpx the SDK itself would pick."""
    from google.genai import _api_client as sdk  # its backend choice (GOOGLE_GENAI_HTTP_CLIENT, installed)
    backend = sdk._get_http_client_backend(None)
    transport = importlib.import_module(backend).AsyncHTTPTransport()
    return {"event_hooks": {"response": [_remember_response]}, "transport": transport}


class GoogleAdapter(Adapter):
    """Gemini via ``google.genai.Client``: generateContent and streamGenerateContent (SSE)."""

    protocol = "google"

    # ── SDK client ──
    def _make_client(self, async_: bool) -> Any:
        """A ``genai.Client``; async calls go through its ``.aio`` side."""
        genai = require("google.genai")
        key = self.settings.resolved_api_key()
        if not key:
            env = self.settings.api_key_env or "api_key"
            raise errors.AuthenticationError(
                f"no API key: set {env} or pass api_key for provider {self.provider!r}",
                provider=self.provider)
        return genai.Client(api_key=key, http_options=self._http_options(async_))

    def _http_options(self, async_: bool) -> Any:
        """The SDK's HttpOptions: our base URL, timeout and headers, no SDK retries, httpx."""
        types = require("google.genai.types")
        return types.HttpOptions(
            base_url=self.settings.base_url or None,
            timeout=int(self.settings.timeout * 1000),  # the SDK takes milliseconds
            headers=dict(self.settings.headers) or None,
            retry_options=types.HttpRetryOptions(attempts=1),
            async_client_args=_async_args() if async_ else None,
        )

    def _warm_client(self, client: Any, asynchronous: bool) -> None:
        (client.aio if asynchronous else client).models  # noqa: B018 - built, and imported, on first use
        require("google.genai.types").GenerateContentConfig()  # its validators are built on first use

    def close(self) -> None:
        if self._sync_client is not None:
            self._sync_client.close()

    async def aclose(self) -> None:
        self.close()
        client = self._own_async_client()
        if client is not None:
            await client.aio.aclose()

    def _kwargs(self, request: ChatRequest, model: str, timeout: float | None, *,
                raw_http: bool = False) -> dict[str, Any]:
        """SDK kwargs; options an older google-genai does not know are left out. ``raw_http``
        (non-streaming calls only) asks for the unparsed HTTP response. ``timeout``: this
        request's, as ``config.http_options.timeout`` (milliseconds; patched over the client's
        options; 0 would mean none, so at least 1)."""
        kwargs = convert.to_request(request, model, self.settings)
        if timeout is not None:
            kwargs["config"]["http_options"] = {"timeout": max(math.ceil(timeout * 1000), 1)}
        if traced := TRACE_HEADERS.get():  # the attempt's span (telemetry = "otel"): merged over the client's
            kwargs["config"]["http_options"] = {**kwargs["config"].get("http_options", {}), "headers": traced}
        known = require("google.genai.types").GenerateContentConfig.model_fields
        if "automatic_continuation" not in known:
            kwargs["config"].pop("automatic_continuation", None)
        if raw_http and "should_return_http_response" in known:
            kwargs["config"]["should_return_http_response"] = True
        return kwargs

    # ── calls ──
    # Calls and streams go through the SDK's own API client with the Developer API's JSON
    # when `wire` maps the request (guarded private seam: the SDK's conversion of its request
    # models cost ~2/3 of its time per call, its response model most of a stream's per chunk);
    # it still authenticates, sends, checks the status and raises its typed errors. Otherwise
    # ``generate_content`` asked for the raw HTTP response (public
    # ``should_return_http_response``): the answer's models are skipped; a stream takes
    # ``generate_content_stream``.
    def complete(self, request: ChatRequest, model: str, timeout: float | None = None) -> ChatResponse:
        client = self.sync_client()
        kwargs = self._kwargs(request, model, timeout, raw_http=True)
        api, wire_body = self._wire(client, kwargs)
        if api is not None and wire_body is not None:
            raw = api.request("post", wire.path(model), wire_body, kwargs["config"].get("http_options"))
        else:
            raw = client.models.generate_content(**kwargs)
        return convert.from_response(_body(raw), self.provider, model=model)

    async def acomplete(self, request: ChatRequest, model: str, timeout: float | None = None) -> ChatResponse:
        client = self.async_client()
        kwargs = self._kwargs(request, model, timeout, raw_http=True)
        api, wire_body = self._wire(client, kwargs)
        if api is not None and wire_body is not None:
            raw = await api.async_request("post", wire.path(model), wire_body,
                                          kwargs["config"].get("http_options"))
        else:
            raw = await client.aio.models.generate_content(**kwargs)
        return convert.from_response(_body(raw), self.provider, model=model)

    def _wire(self, client: Any, kwargs: dict[str, Any]) -> tuple[Any | None, dict[str, Any] | None]:
        """`wire.seam` of ``client`` (looked up once per SDK client) and the request's wire JSON."""
        api = getattr(client, "unillm_seam", False)
        if api is False:
            api = wire.seam(client)
            client.unillm_seam = api
        return (api, wire.body(kwargs)) if api is not None else (None, None)

    def embed(self, request: EmbedRequest, model: str, timeout: float | None = None) -> Vectors:
        from . import embed
        resp = self.sync_client().models.embed_content(**embed.to_kwargs(request, model, self.settings, timeout))
        return embed.from_response(resp, self.provider, model, len(request.input))

    async def aembed(self, request: EmbedRequest, model: str, timeout: float | None = None) -> Vectors:
        from . import embed
        resp = await self.async_client().aio.models.embed_content(**embed.to_kwargs(request, model, self.settings, timeout))
        return embed.from_response(resp, self.provider, model, len(request.input))

    def stream_state(self, model: str) -> Any:
        return convert.StreamState(self.provider, model)

    def _stream(self, request: ChatRequest, model: str, state: convert.StreamState,
                timeout: float | None) -> Iterator[StreamChunk]:
        client = self.sync_client()
        kwargs = self._kwargs(request, model, timeout)
        api, wire_body = self._wire(client, kwargs)
        if api is not None and wire_body is not None:
            sdk_stream = api.request_streamed("post", wire.path(model, stream=True), wire_body,
                                              kwargs["config"].get("http_options"))
        else:
            sdk_stream = client.models.generate_content_stream(**kwargs)
        try:
            for event in sdk_stream:
                yield from state.feed(_body(event))
            check_complete(state, self.provider, model, "a finishReason")
            yield state.finish()
        finally:
            sdk_stream.close()  # closed early or broken: release the connection

    async def _astream(self, request: ChatRequest, model: str, state: convert.StreamState,
                       timeout: float | None) -> AsyncIterator[StreamChunk]:
        client = self.async_client()
        kwargs = self._kwargs(request, model, timeout)
        api, wire_body = self._wire(client, kwargs)
        responses: list[Any] = []
        token = _OPEN_RESPONSES.set(responses)
        try:  # the seam sends here, the public path on the first event
            if api is not None and wire_body is not None:
                sdk_stream = await api.async_request_streamed(
                    "post", wire.path(model, stream=True), wire_body, kwargs["config"].get("http_options"))
            else:
                sdk_stream = await client.aio.models.generate_content_stream(**kwargs)
        except BaseException:
            for response in responses:
                await response.aclose()
            raise
        finally:
            _OPEN_RESPONSES.reset(token)
        try:
            while True:
                token = _OPEN_RESPONSES.set(responses)
                try:
                    event = await sdk_stream.__anext__()
                except StopAsyncIteration:
                    break
                finally:
                    _OPEN_RESPONSES.reset(token)
                for chunk in state.feed(_body(event)):
                    yield chunk
            check_complete(state, self.provider, model, "a finishReason")
            yield state.finish()
        finally:
            await sdk_stream.aclose()
            for response in responses:  # closed early or broken: release the connection
                await response.aclose()

    # ── errors ──
    def translate_error(self, exc: BaseException, model: str) -> errors.ProviderError | None:
        """google-genai / httpx exceptions -> ours, by class first, then by HTTP status."""
        if isinstance(exc, errors.ProviderError):
            return exc
        sdk_errors = require("google.genai.errors")
        where: ErrorWhere = {"provider": self.provider, "model": model}
        if isinstance(exc, sdk_errors.APIError):
            return self._api_error(exc, model)
        if isinstance(exc, (sdk_errors.UnknownApiResponseError, json.JSONDecodeError)):
            return errors.ResponseError(f"unreadable response: {self._scrub(exc)}", **where)
        cls = _transport_error_class(exc)
        if cls is not None:
            return cls(f"{type(exc).__name__}: {self._scrub(exc)}", **where)
        pydantic = require("pydantic")
        if isinstance(exc, pydantic.ValidationError):
            return errors.ResponseError(f"response does not fit the Gemini schema: {exc}", **where)
        return None

    def _api_error(self, exc: Any, model: str) -> errors.ProviderError:
        body = exc.details
        message = self._scrub(exc.message or error_message(body, str(exc)))
        response = getattr(exc, "response", None)
        retry_after = parse_retry_after(getattr(response, "headers", None))
        if retry_after is None:
            retry_after = _retry_info(body)
        status = exc.code if isinstance(exc.code, int) else None
        return error_for_status(status, message, provider=self.provider, model=model,
                                retry_after=retry_after, body=body)

    def _scrub(self, exc_or_text: Any) -> str:
        """Text with the API key masked, should an SDK ever echo it."""
        return self.redactor().text(str(exc_or_text))


def _transport_error_class(exc: BaseException) -> type[errors.ProviderError] | None:
    """Our class for an httpx / httpx2 transport failure (the SDK lets these out raw)."""
    for name in ("httpx2", "httpx"):  # an exception from either means it is loaded
        mod = sys.modules.get(name)
        if mod is None:
            continue
        if isinstance(exc, mod.TimeoutException):
            return errors.TimeoutError
        if isinstance(exc, mod.DecodingError):
            return errors.ResponseError
        if isinstance(exc, mod.TransportError):
            return errors.ConnectionError
    return None


def _retry_info(body: Any) -> float | None:
    """Seconds from a google.rpc.RetryInfo detail (``"retryDelay": "37s"``), if any."""
    if not isinstance(body, dict):
        return None
    details = (body.get("error") or {}).get("details") if isinstance(body.get("error"), dict) else None
    for detail in details or body.get("details") or []:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            match = _RETRY_DELAY.match(str(detail.get("retryDelay", "")))
            if match:
                return float(match.group(1))
    return None


def _body(raw: Any) -> Any:
    """The vendor's JSON when the SDK handed back the raw HTTP body (its API client's
    ``SdkHttpResponse``, or a response carrying one), else its parsed model (a google-genai
    without ``should_return_http_response``)."""
    body = getattr(raw, "body", None)  # an SdkHttpResponse (GenerateContentResponse has no body)
    if body is None:
        body = getattr(getattr(raw, "sdk_http_response", None), "body", None)
    return raw if body is None else json.loads(body)
