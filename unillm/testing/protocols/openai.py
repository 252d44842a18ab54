"""FakeProvider: OpenAI's Chat Completions wire protocol.

``POST {base_url}/chat/completions`` with ``base_url = url + "/v1"``. Renders a
neutral `Reply` the way OpenAI does: a ``chat.completion`` JSON body, or
``chat.completion.chunk`` SSE events ending with ``data: [DONE]``. Usage follows
OpenAI's semantics: ``prompt_tokens`` includes ``cached_tokens`` (and cache
writes), ``completion_tokens`` includes ``reasoning_tokens``. A stream carries
usage only when the request asked for ``stream_options.include_usage``, in one
extra chunk with empty ``choices`` (the other chunks then say ``"usage": null``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import fields
from typing import Any

from ..replies import Ctx, Reply, ToolCallSpec
from .base import Protocol

_PATH = re.compile(r"^(/v1)?/chat/completions/?$")
_CREATED = 1_700_000_000
_DEFAULT_TEXT = next(f.default for f in fields(Reply) if f.name == "text")

# OpenAI's error ``type`` / ``code`` per status, and a default message
_ERRORS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided."),
    403: ("invalid_request_error", "unsupported_country_region_territory",
          "Country, region, or territory not supported"),
    404: ("invalid_request_error", "model_not_found",
          "The model does not exist or you do not have access to it."),
    409: ("invalid_request_error", None, "Conflict."),
    422: ("invalid_request_error", None, "Unprocessable entity."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests."),
    500: ("server_error", None, "The server had an error while processing your request."),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}
_CONTEXT = re.compile(r"context length|context window|maximum context", re.IGNORECASE)


class OpenAIProtocol(Protocol):
    name = "openai"
    base_path = "/v1"
    route = _PATH

    # ── non-streaming ──
    def render(self, reply: Reply, ctx: Ctx) -> Any:
        message: dict[str, Any] = {"role": "assistant", "content": _content(reply), "refusal": None,
                                   "annotations": []}
        calls = reply.tool_call_specs()
        if calls:
            message["tool_calls"] = [_tool_call(tc) for tc in calls]
        body = _envelope(reply, ctx, "chat.completion")
        body["choices"] = [{"index": 0, "message": message, "logprobs": None,
                            "finish_reason": reply.neutral_finish()}]
        usage = render_usage(ctx.usage(reply))
        if usage is not None:
            body["usage"] = usage
        body["service_tier"] = "default"
        return body

    # ── streaming ──
    def render_stream(self, reply: Reply, ctx: Ctx) -> Iterable[Any]:
        include_usage = _wants_usage(ctx.body)
        for delta, finish in _deltas(reply):
            chunk = _envelope(reply, ctx, "chat.completion.chunk")
            chunk["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]
            if include_usage:
                chunk["usage"] = None
            yield chunk
        usage = render_usage(ctx.usage(reply))
        if include_usage and usage is not None:
            chunk = _envelope(reply, ctx, "chat.completion.chunk")
            chunk["choices"] = []
            chunk["usage"] = usage
            yield chunk
        yield "[DONE]"

    # ── errors ──
    def render_error(self, reply: Reply, ctx: Ctx) -> Any:
        kind, code, default = _ERRORS.get(reply.status, ("server_error" if reply.status >= 500
                                                         else "invalid_request_error", None, "Error."))
        message = reply.error if isinstance(reply.error, str) and reply.error else default
        if reply.status == 400 and _CONTEXT.search(message):
            code = "context_length_exceeded"
        param = "messages" if code == "context_length_exceeded" else None
        return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def render_usage(u: dict[str, int] | None) -> dict[str, Any] | None:
    """Neutral buckets -> OpenAI's usage object (cached and written inside prompt_tokens)."""
    if u is None:
        return None
    prompt = u["input_tokens"] + u["cache_read_tokens"] + u["cache_write_tokens"]
    details: dict[str, int] = {"cached_tokens": u["cache_read_tokens"], "audio_tokens": 0}
    if u["cache_write_tokens"]:
        details["cache_write_tokens"] = u["cache_write_tokens"]
    return {
        "prompt_tokens": prompt,
        "completion_tokens": u["output_tokens"],
        "total_tokens": prompt + u["output_tokens"],
        "prompt_tokens_details": details,
        "completion_tokens_details": {"reasoning_tokens": u["reasoning_tokens"], "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def _content(reply: Reply) -> str | None:
    """OpenAI sends ``content: null`` beside tool calls unless text was scripted."""
    if reply.tool_calls and reply.text == _DEFAULT_TEXT:
        return None
    return reply.text


def _envelope(reply: Reply, ctx: Ctx, obj: str) -> dict[str, Any]:
    return {"id": f"chatcmpl-fake{ctx.seq:06d}", "object": obj, "created": _CREATED + ctx.seq,
            "model": reply.model or ctx.model, "system_fingerprint": "fp_fake"}


def _tool_call(tc: ToolCallSpec) -> dict[str, Any]:
    return {"id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": tc.arguments_json()}}


def _wants_usage(body: Any) -> bool:
    opts = body.get("stream_options") if isinstance(body, dict) else None
    return isinstance(opts, dict) and opts.get("include_usage") is True


def _deltas(reply: Reply) -> Iterator[tuple[dict[str, Any], str | None]]:
    """(delta, finish_reason) pairs in OpenAI's order: role, text, tool calls, finish."""
    content = _content(reply)
    yield {"role": "assistant", "content": "" if content is not None else None, "refusal": None}, None
    if content:
        for piece in reply.text_pieces():
            yield {"content": piece}, None
    n = max(reply.chunk_size, 1)
    for i, tc in enumerate(reply.tool_call_specs()):
        head = {"index": i, "id": tc.id, "type": "function", "function": {"name": tc.name, "arguments": ""}}
        yield {"tool_calls": [head]}, None
        args = tc.arguments_json()
        for start in range(0, len(args), n):
            yield {"tool_calls": [{"index": i, "function": {"arguments": args[start:start + n]}}]}, None
    yield {}, reply.neutral_finish()
