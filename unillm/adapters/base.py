"""The adapter protocol: what every wire protocol (openai, anthropic, google, cohere) provides.

An adapter folder holds ``adapter.py`` (the SDK-facing class; the SDK is imported
lazily, on first call) and ``convert.py`` (pure functions: request -> SDK kwargs,
SDK response -> ChatResponse, SDK chunk -> StreamChunk, SDK usage -> Usage).

Adapters know nothing of retries, pricing, budgets or the ledger: the Client does
those. An adapter makes exactly one attempt per call and lets SDK exceptions out;
the Client hands them to `translate_error`, the one place SDK errors become ours.
"""

from __future__ import annotations

import importlib
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypedDict

from .. import errors
from ..types import ChatRequest, ChatResponse, StreamChunk
from . import registry

if TYPE_CHECKING:
    from ..profiles import ProviderSettings
    from ..streaming import AsyncVendorStream, VendorStream

# what to pip install for the optional modules that are not an adapter's SDK (those the
# adapter registry knows)
_EXTRAS = {"tiktoken": "tokens", "diskcache": "cache", "psycopg": "postgres", "psycopg_pool": "postgres",
           "redis": "redis", "pyarrow": "parquet", "boto3": "bedrock", "botocore": "bedrock",
           "google.auth": "vertex", "azure.identity": "azure"}


def require(module: str) -> Any:
    """Import an optional dependency, or fail with the install command of its extra
    (``google.genai.types`` is the ``google`` extra's, as ``google.genai`` is)."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        spec = registry.sdk_of(module)
        if spec is not None:
            raise errors.MissingDependencyError(spec.sdk_module, spec.extra, install=spec.requirement) from exc
        package, extra = _extra_of(module)
        raise errors.MissingDependencyError(package, extra) from exc


class ErrorWhere(TypedDict):
    """Where an error happened: the keyword arguments every `errors.ProviderError` takes."""

    provider: str
    model: str


def _extra_of(module: str) -> tuple[str, str]:
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in _EXTRAS:
            return name, _EXTRAS[name]
    return module, "all"


class Adapter(ABC):
    """One wire protocol, bound to one provider's settings (key, base URL, timeout)."""

    #: name of the wire protocol, as written in a profile's ``adapter = "..."`` (its SDK module,
    #: pip requirement and the rest are declared once, in `unillm.adapters.registry`)
    protocol: str = ""

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings
        self._sync_client: Any = None
        self._async_client: Any = None   # the async client of the loop that last asked
        self._async_loop: Any = None     # ... and that loop
        self._async_loops: Any = None    # event loop -> its async client (weakly, by loop)
        self._warmed: set[int] = set()   # ids of the SDK clients `warm` has prepared

    @property
    def provider(self) -> str:
        return self.settings.name

    def warm(self, asynchronous: bool) -> None:
        """Build the SDK client (of the running loop, when ``asynchronous``) before a call's
        timer starts. A failure (no API key, say) is left for the call's attempt to meet."""
        try:
            client = self.async_client() if asynchronous else self.sync_client()
            if id(client) not in self._warmed:   # once per SDK client: not on every call
                self._warm_client(client, asynchronous)
                self._warmed.add(id(client))
        except Exception:  # noqa: BLE001 - raised again, and translated, by the attempt
            return

    def _warm_client(self, client: Any, asynchronous: bool) -> None:
        """What an SDK builds lazily on a client's first request (resources it imports)."""

    def load_sdk(self) -> None:
        """Import the SDK now, before a call's timer starts: its import (0.5-2.5 s for some
        SDKs) is start-up work, not the latency of the first request."""
        sdk = registry.get(self.settings.adapter).sdk_module
        if sdk:
            require(sdk)

    # SDK clients are built once per adapter and reused: building one per call
    # costs more than the call overhead we allow ourselves.
    def sync_client(self) -> Any:
        if self._sync_client is None:
            self._sync_client = self._make_client(async_=False)
        return self._sync_client

    def async_client(self) -> Any:
        """The async SDK client of the running event loop: its connections belong to the loop
        that opened them, so a Client used in a second ``asyncio.run`` gets a new one."""
        import asyncio  # already imported by whoever runs a loop
        loop = asyncio.get_running_loop()
        if self._async_loop is not loop or self._async_client is None:
            if self._async_loops is None:
                import weakref
                self._async_loops = weakref.WeakKeyDictionary()
            client = self._async_loops.get(loop)
            if client is None:
                client = self._async_loops[loop] = self._make_client(async_=True)
            self._async_client, self._async_loop = client, loop
        return self._async_client

    @abstractmethod
    def _make_client(self, async_: bool) -> Any:
        """Build the SDK client with base_url, api key and timeout, and SDK retries OFF."""

    @abstractmethod
    def complete(self, request: ChatRequest, model: str, timeout: float | None = None) -> ChatResponse:
        """One non-streaming attempt. ``usage`` is None when the vendor reported none.
        ``timeout``: seconds for this request, given to the SDK its own way (None: the
        provider's ``timeout``, set on the SDK client); the Client passes the time left to the
        call's deadline when that is shorter."""

    @abstractmethod
    async def acomplete(self, request: ChatRequest, model: str, timeout: float | None = None) -> ChatResponse: ...

    def stream(self, request: ChatRequest, model: str, timeout: float | None = None) -> VendorStream:
        """One streaming attempt, lazily (nothing is sent before the first ``next``). Closing it
        closes the SDK stream.

        Yields OpenAI-shaped chunks; when the vendor reports usage, the last chunk
        carries it (cumulative usage is taken once, never summed). The `VendorStream`'s
        ``reported()`` keeps the usage the vendor sent even when the stream is cut before
        its last chunk. A stream is complete only when the vendor signalled its end
        (`check_complete`); one that ends otherwise raises `ResponseError`.
        """
        from ..streaming import VendorStream
        state = self.stream_state(model)
        return VendorStream(self._stream(request, model, state, timeout), state)

    def astream(self, request: ChatRequest, model: str, timeout: float | None = None) -> AsyncVendorStream:
        from ..streaming import AsyncVendorStream
        state = self.stream_state(model)
        return AsyncVendorStream(self._astream(request, model, state, timeout), state)

    @abstractmethod
    def stream_state(self, model: str) -> Any:
        """A fresh stream state of this protocol's converter (``convert.StreamState``)."""

    @abstractmethod
    def _stream(self, request: ChatRequest, model: str, state: Any,
                timeout: float | None) -> Iterator[StreamChunk]:
        """The chunks of one stream, read through ``state`` (``timeout``: as `complete`'s)."""

    @abstractmethod
    def _astream(self, request: ChatRequest, model: str, state: Any,
                 timeout: float | None) -> AsyncIterator[StreamChunk]: ...

    @abstractmethod
    def translate_error(self, exc: BaseException, model: str) -> errors.ProviderError | None:
        """Map this SDK's exception to ours; None when it is not an SDK error."""

    def translate(self, exc: BaseException, model: str) -> BaseException:
        """`translate_error`, with this provider's secrets redacted from both errors (ours, and
        the SDK's it is chained to, in place): a vendor that echoes the key it was sent (OpenAI's
        401 does) shows it nowhere: not in str/repr, ``body``, a traceback or a pickle."""
        err = exc if isinstance(exc, errors.UnillmError) else self.translate_error(exc, model)
        redactor = self.redactor()
        if redactor:
            redactor.exception(exc)
            if err is not None and err is not exc:
                redactor.exception(err)
        return err if err is not None else exc

    def redactor(self) -> errors.Redactor:
        return errors.Redactor(self.settings.secrets())

    def _own_async_client(self) -> Any:
        """The async client opened on the running loop, or None; clients of other loops are
        forgotten (a closed loop's connections cannot be closed from this one)."""
        import asyncio
        client = self._async_loops.get(asyncio.get_running_loop()) if self._async_loops else None
        self._async_client = self._async_loop = self._async_loops = None
        return client

    async def aclose(self) -> None:
        """Release pooled connections, async (of the running loop) and sync."""
        self.close()
        for c in (self._own_async_client(),):
            close = getattr(c, "close", None) or getattr(c, "aclose", None)
            if close is not None:
                res = close()
                if hasattr(res, "__await__"):
                    await res

    def close(self) -> None:
        close = getattr(self._sync_client, "close", None)
        if close is not None:
            close()


def check_complete(state: Any, provider: str, model: str, signal: str) -> None:
    """After a stream's last event: a `ResponseError` unless the vendor sent ``signal`` (its
    finish reason or stop event; ``state.complete``). Every adapter classifies alike: a stream
    the vendor did not finish is partial (never cached; before any chunk, a fallback may answer)."""
    if not state.complete:
        raise errors.ResponseError(f"the stream ended before the vendor sent {signal}",
                                   provider=provider, model=model)


# ── shared pieces every adapter's translate_error uses ───────────────────────

_CONTEXT_WINDOW = re.compile(
    r"context[ _-]?(window|length)|maximum context|too many tokens|prompt is too long|"
    r"input (token count|length).*exceeds|reduce the length|exceeds the maximum number of tokens",
    re.IGNORECASE,
)

_BY_STATUS: dict[int, type[errors.ProviderError]] = {
    400: errors.BadRequestError,
    401: errors.AuthenticationError,
    403: errors.PermissionDeniedError,
    404: errors.NotFoundError,
    408: errors.TimeoutError,
    413: errors.BadRequestError,
    422: errors.BadRequestError,
    429: errors.RateLimitError,
}


def error_for_status(status: int | None, message: str, *, provider: str, model: str,
                     retry_after: float | None = None, body: Any = None) -> errors.ProviderError:
    """Classify an HTTP failure by status; message text only separates context-window errors."""
    if status is None:
        cls: type[errors.ProviderError] = errors.ProviderError
    elif status in _BY_STATUS:
        cls = _BY_STATUS[status]
    elif status >= 500:
        cls = errors.ServerError
    else:
        cls = errors.ProviderError
    if issubclass(cls, errors.BadRequestError) and _CONTEXT_WINDOW.search(message or ""):
        cls = errors.ContextWindowExceededError
    return cls(message, provider=provider, model=model, status_code=status,
               retry_after=retry_after, body=body)


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` / ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(float(ms) / 1000.0, 0.0)
        value = headers.get("retry-after")
    except AttributeError:
        return None
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        import time
        return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
    except (TypeError, ValueError):
        return None


def json_body(raw_response: Any) -> Any:
    """The JSON of an SDK's ``with_raw_response`` result.

    The SDK still builds and sends the request, checks the status and raises its
    typed errors; we only skip its parse into its own models, which our converter
    would immediately turn into ours (measured: ~75 µs a call). Malformed JSON
    raises `json.JSONDecodeError`, which the adapters translate to ResponseError.
    """
    import json
    return json.loads(raw_response.http_response.content)


def error_message(body: Any, fallback: str) -> str:
    """Dig the human message out of a vendor error body ({"error": {"message": ...}} etc.)."""
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict):
            for key in ("message", "detail", "msg"):
                if isinstance(message := inner.get(key), str):
                    return message
        elif isinstance(inner, str):
            return inner
        for key in ("message", "detail"):
            if isinstance(message := body.get(key), str):
                return message
    if isinstance(body, str) and body:
        return body
    return fallback
