"""``POST /v1/chat/completions`` and ``GET /v1/models``: OpenAI's wire format over `Client.achat`.

The body is OpenAI's; every parameter either maps onto `Client.achat`, is one
the gateway handles itself (``stream``, ``stream_options``, ``metadata`` as extra
tags, each allowed by `tenancy.TagPolicy`), or is refused with a 400 naming it.
``extra`` (vendor parameters passed through) is refused unless each of its keys is
in ``[server] allow_extra``; ``drop_params`` defaults to the operator's setting.
A model of a provider the operator did not configure is a 404 before anything is
sent. Streams are Server-Sent Events ending in ``data: [DONE]``; with
``stream_options.include_usage`` the last event before it carries the usage and a
``unillm`` object with the exact cost.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Collection
from typing import Any

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from .. import errors
from ..types import REQUEST_PARAMS
from .limits import parse_json
from .wire import (
    HTTPError,
    chunk_body,
    completion_body,
    dumps,
    error_body,
    from_exception,
    header_value,
    json_response,
    openai_usage,
    unillm_headers,
)

#: OpenAI parameters passed to Client.achat under the same name (``extra``: see `_extra`)
_PASSED = REQUEST_PARAMS - {"drop_params", "extra"}
#: accepted and ignored: they change nothing a gateway call does
_IGNORED = frozenset({"store", "service_tier", "prompt_cache_key", "safety_identifier"})
#: OpenAI parameters unillm cannot honour, with the only value accepted (None = any falsy)
_UNSUPPORTED: dict[str, Any] = {"n": 1, "logprobs": False, "top_logprobs": None, "logit_bias": None,
                                "functions": None, "function_call": None, "audio": None,
                                "modalities": None, "prediction": None, "web_search_options": None}
#: keys an OpenAI SDK echoes back on assistant messages; dropped when empty
_ECHOED = frozenset({"refusal", "annotations", "audio", "function_call"})


async def read_json(request: Request) -> Any:
    """The body as JSON: within the gateway's limits (`limits.parse_json`), or a 4xx."""
    gw = getattr(request.app.state, "gateway", None)
    depth = gw.server.max_json_depth if gw is not None else 64
    return parse_json(await request.body(), depth)


def to_call(body: Any, *, allow_extra: Collection[str] = ()
            ) -> tuple[str, list[Any], dict[str, Any], bool, bool, dict[str, str]]:
    """(model, messages, params, stream, include_usage, caller tags) from an OpenAI body."""
    if not isinstance(body, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    body = dict(body)
    model = body.pop("model", None)
    if not isinstance(model, str) or not model:
        raise HTTPError(400, "you must provide a model parameter", param="model")
    messages = body.pop("messages", None)
    if not isinstance(messages, list):
        raise HTTPError(400, "'messages' must be a list of message objects", param="messages")
    stream = body.pop("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise HTTPError(400, "'stream' must be a boolean", param="stream")
    opts = body.pop("stream_options", None) or {}
    include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
    tags = _tags(body.pop("metadata", None))
    if "max_completion_tokens" in body:
        value = body.pop("max_completion_tokens")
        body.setdefault("max_tokens", value)
    params: dict[str, Any] = {}
    extra = body.pop("extra", None)
    if extra is not None:
        params["extra"] = _extra(extra, allow_extra)
    drop = body.pop("drop_params", None)
    if drop is not None:  # LiteLLM clients send it; absent, the operator's setting holds
        if not isinstance(drop, bool):
            raise HTTPError(400, "'drop_params' must be a boolean", param="drop_params")
        params["drop_params"] = drop
    for name, value in body.items():
        if name in _PASSED:
            if value is not None:
                params[name] = value
        elif name in _UNSUPPORTED:
            if value not in (None, False, _UNSUPPORTED[name], [], {}):
                raise HTTPError(400, f"the parameter {name!r} is not supported by this gateway",
                                code="unsupported_parameter", param=name)
        elif name not in _IGNORED:
            raise HTTPError(400, f"unrecognized request argument supplied: {name}",
                            code="unknown_parameter", param=name)
    return model, [_clean(m) for m in messages], params, bool(stream), include_usage, tags


def _extra(extra: Any, allowed: Collection[str]) -> dict[str, Any]:
    """``extra`` when the operator allows every key in it (``[server] allow_extra``), else a 400."""
    if not isinstance(extra, dict):
        raise HTTPError(400, "'extra' must be an object of vendor parameters", param="extra")
    for name in sorted(extra):
        if name not in allowed:
            listed = ", ".join(sorted(allowed)) or "none"
            raise HTTPError(400, f"'extra.{name}' is not allowed by this gateway (extra keys "
                            f"allowed: {listed}; [server] allow_extra)",
                            code="extra_not_allowed", param=f"extra.{name}")
    return extra


def _clean(message: Any) -> Any:
    if isinstance(message, dict) and not _ECHOED.isdisjoint(message):
        return {k: v for k, v in message.items() if not (k in _ECHOED and not v)}
    return message


def _tags(metadata: Any) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                  for k, v in metadata.items()):
        raise HTTPError(400, "'metadata' must map strings to strings", param="metadata")
    return metadata


async def completions(request: Request) -> Response:
    gw = request.app.state.gateway
    key = gw.authenticate(request)
    model, messages, params, stream, include_usage, caller = to_call(
        await read_json(request), allow_extra=gw.server.allow_extra)
    tags = gw.tag_policy.merge(caller, key)  # the key's tenancy is authoritative
    gw.check_model(model, key)
    await gw.admit(key)
    metrics = gw.metrics  # None unless [server.metrics] is enabled: then nothing is timed
    t0 = time.perf_counter() if metrics is not None else 0.0
    if stream:
        return await _stream(gw, key, model, messages, params, tags, include_usage, t0)
    try:
        resp = await gw.client.achat(model, messages, tags=tags, **params)
    except Exception as exc:
        if metrics is not None:
            metrics.failed(key, model, exc)
        raise
    gw.finished(key, resp)
    if metrics is not None:
        metrics.finished(key, resp, time.perf_counter() - t0)
    return json_response(completion_body(resp), headers=unillm_headers(resp))


async def _stream(gw: Any, key: Any, model: str, messages: list[Any], params: dict[str, Any],
                  tags: dict[str, str], include_usage: bool, t0: float = 0.0) -> Response:
    try:
        chat_stream = await gw.client.achat(model, messages, stream=True, tags=tags, **params)
    except Exception as exc:
        if gw.metrics is not None:
            gw.metrics.failed(key, model, exc)
        raise
    try:
        first = await chat_stream.__anext__()
    except StopAsyncIteration:
        first = None
    except BaseException:
        await chat_stream.aclose()
        raise
    if gw.metrics is not None and first is not None:
        gw.metrics.first_token(first.model, first.provider or "", time.perf_counter() - t0)
    headers = {"cache-control": "no-cache", "x-accel-buffering": "no"}
    if first is not None and first.model:
        headers["x-unillm-model"] = header_value(f"{first.provider}/{first.model}" if first.provider
                                                 else first.model)
    return StreamingResponse(_events(gw, key, chat_stream, first, include_usage, t0),
                             media_type="text/event-stream", headers=headers)


def _sse(payload: Any) -> bytes:
    return b"data: " + dumps(payload).encode() + b"\n\n"


async def _events(gw: Any, key: Any, chat_stream: Any, first: Any,
                  include_usage: bool, t0: float = 0.0) -> AsyncIterator[bytes]:
    """SSE frames: the chunks, an error event if the stream breaks, usage, ``[DONE]``."""
    try:
        if first is not None and first.choices:
            yield _sse(chunk_body(first))
        async for chunk in chat_stream:
            if chunk.choices:  # usage-only chunks are folded into the final usage event
                yield _sse(chunk_body(chunk))
    except errors.UnillmError as exc:
        yield _sse(error_body(gw.http_error(exc)))
        return
    finally:
        await chat_stream.aclose()  # a client that hung up still gets its partial call recorded
        if chat_stream.response is not None:
            gw.finished(key, chat_stream.response)
            if gw.metrics is not None:
                gw.metrics.finished(key, chat_stream.response, time.perf_counter() - t0)
    resp = chat_stream.response
    if include_usage and resp is not None:
        yield _sse({"id": resp.id, "object": "chat.completion.chunk", "created": resp.created,
                    "model": resp.model, "choices": [], "usage": openai_usage(resp.usage),
                    "unillm": _summary(resp)})
    yield b"data: [DONE]\n\n"


def _summary(resp: Any) -> dict[str, Any]:
    h = unillm_headers(resp)
    return {"cost_usd": h["x-unillm-cost"], "cached": resp.cached, "provider": resp.provider,
            "rule": resp.rule, "ledger_id": resp.ledger_id}


async def models(request: Request) -> Response:
    """Models reachable through the configured providers, and the aliases."""
    gw = request.app.state.gateway
    gw.authenticate(request)
    return json_response({"object": "list", "data": gw.model_list()})


__all__ = ["completions", "from_exception", "models", "read_json", "to_call"]
