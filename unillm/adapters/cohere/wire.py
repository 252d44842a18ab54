"""Cohere v2 chat (and its stream) through the SDK's own HTTP client, without its request and
answer models.

Why a private seam: cohere's public raw client (``with_raw_response.chat``) still walks our
messages through its type annotations and builds its pydantic models of the answer before it
hands back the HTTP response (measured on cohere 7.3: ~250 of the ~500 µs the SDK spends per
call), and no public option skips either. ``ClientV2._client_wrapper.httpx_client`` is the
SDK's HTTP client that the raw client itself calls: it still adds the SDK's auth and
headers, base URL, timeout and ``request_options`` (extra headers/body, per-request timeout).
We send the body our converter already builds in the wire's own shape (the v2 request types
carry no aliases) and check the status as the raw client does, raising the SDK's own
exception classes (``cohere.errors``), so `CohereAdapter.translate_error` is unchanged.
Streams go through its ``stream`` the same way and read the events with the SDK's own
``EventSource``, as JSON (its public ``chat_stream`` builds a model per event: measured 1.30x
the raw SDK's stream per chunk through it, 0.23x through the seam).

Guarded: used only on the cohere majors in `TESTED` and when the seam has the shape read
here; anything else takes the public path (`seam` returns None). tests/adapters/test_cohere_wire.py
fails loudly when an installed cohere no longer offers it.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

#: cohere majors this seam was read and tested against (its generated raw client in 7.x)
TESTED = frozenset({7})
_PARAMS = frozenset({"method", "json", "headers", "request_options", "omit"})
_HEADERS = {"content-type": "application/json"}
_errors_by_status: dict[int, type[Exception]] | None = None


def usable(cohere: Any) -> bool:
    """True when this cohere's version is one the seam was tested on."""
    major = str(getattr(cohere, "__version__", "")).split(".")[0]
    return major.isdigit() and int(major) in TESTED


def seam(client: Any) -> Any | None:
    """The SDK's HTTP client of ``client`` (a ClientV2 / AsyncClientV2), or None when this
    cohere lacks it in the shape this module reads (then the public path is taken)."""
    import cohere
    if not usable(cohere):
        return None
    http = getattr(getattr(client, "_client_wrapper", None), "httpx_client", None)
    for name in ("request", "stream"):
        method = getattr(http, name, None)
        if method is None:
            return None
        try:
            params = set(inspect.signature(method).parameters)
        except (TypeError, ValueError):
            return None
        if not _PARAMS <= params:
            return None
    return http


def chat_args(kwargs: dict[str, Any], *, stream: bool = False) -> dict[str, Any]:
    """``HttpClient.request`` (``stream``: ``HttpClient.stream``) arguments for ``v2/chat``
    from ``chat`` kwargs."""
    body = dict(kwargs)
    options = body.pop("request_options", None)
    body["stream"] = stream
    return {"method": "POST", "json": body, "headers": _HEADERS, "request_options": options}


def answer(response: Any) -> Any:
    """The JSON of a 2xx ``v2/chat`` response; otherwise the SDK's own exception for the status
    (as its raw client raises them: the typed class, else ``ApiError``; a body that is not
    JSON as ``ApiError`` with the text)."""
    from cohere.core.api_error import ApiError
    status, headers = response.status_code, dict(response.headers)
    try:
        body = json.loads(response.content)
    except json.JSONDecodeError:
        raise ApiError(status_code=status, headers=headers, body=response.text) from None
    if 200 <= status < 300:
        return body
    cls = _error_classes().get(status)
    if cls is not None:
        raise cls(headers=headers, body=body)  # type: ignore[call-arg]
    raise ApiError(status_code=status, headers=headers, body=body)


def events(response: Any) -> Iterator[Any]:
    """The events of a 2xx ``v2/chat`` stream as JSON, read as the SDK's raw client reads
    them (its own `EventSource`, which raises ``SSEError`` for a body that is not an event
    stream; ``[DONE]`` ends it, empty events are skipped), without its event models."""
    from cohere.core.http_sse import EventSource
    for sse in EventSource(response).iter_sse():
        if sse.data == "[DONE]":
            return
        if sse.data:
            yield _event(sse.data)


async def aevents(response: Any) -> AsyncIterator[Any]:
    """`events` of an async response."""
    from cohere.core.http_sse import EventSource
    async for sse in EventSource(response).aiter_sse():
        if sse.data == "[DONE]":
            return
        if sse.data:
            yield _event(sse.data)


def _event(data: str) -> Any:
    """One event's JSON; data that is not JSON is handed on as its raw SSE field, as the SDK
    hands it on (`convert.StreamState.feed` refuses it: skipping it would lose part of the answer)."""
    try:
        return json.loads(data)
    except json.JSONDecodeError:
        return {"data": data}


def _error_classes() -> dict[int, type[Exception]]:
    """cohere.errors' classes by the status each one stands for (read from the SDK itself)."""
    global _errors_by_status
    if _errors_by_status is None:
        import cohere.errors as sdk
        from cohere.core.api_error import ApiError
        found: dict[int, type[Exception]] = {}
        for name in getattr(sdk, "__all__", dir(sdk)):
            cls = getattr(sdk, name, None)
            if isinstance(cls, type) and issubclass(cls, ApiError) and cls is not ApiError:
                try:
                    status = cls(body=None).status_code
                except TypeError:
                    continue
                if isinstance(status, int):
                    found[status] = cls
        _errors_by_status = found
    return _errors_by_status
