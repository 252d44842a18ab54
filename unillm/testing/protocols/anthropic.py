"""FakeProvider: Anthropic's Messages API (``POST /v1/messages``), JSON and SSE.

Shapes follow the vendor's recorded payloads (see shared/refs/responses/anthropic_*):
a ``message`` object, the ``message_start`` … ``message_stop`` event sequence
with a ``ping``, and ``{"type": "error", "error": {...}}`` bodies. Usage has the
vendor's semantics: ``input_tokens`` is the uncached part only, cache reads and
writes are separate, and a stream reports input at ``message_start`` and the
cumulative output at ``message_delta``.

Prompt caching as the vendor does it: with ``usage="auto"``, a request whose tools,
system blocks or message blocks carry ``cache_control`` has the prefix up to the last
marker (tools, then system, then messages) reported as ``cache_creation_input_tokens``
the first time this server sees it (its 1-hour part when the marker says
``"ttl": "1h"``) and as ``cache_read_input_tokens`` after that.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from typing import Any

from ..replies import AUTO, Ctx, Reply, ToolCallSpec
from .base import Protocol

_STOP_REASON = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "content_filter": "refusal"}

_ERROR_TYPE = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 413: "request_too_large",
               429: "rate_limit_error", 504: "timeout_error", 529: "overloaded_error"}


class AnthropicProtocol(Protocol):
    name = "anthropic"
    route = re.compile(r"^/v1/messages/*$")

    def __init__(self) -> None:
        self.cached: set[str] = set()  # cache prefixes written so far (served as reads)

    def usage(self, reply: Reply, ctx: Ctx) -> dict[str, int] | None:
        """``ctx.usage``, with the cache_control prefix written or read (see the module doc)."""
        usage = ctx.usage(reply)
        found = _cache_prefix(ctx.body) if usage is not None and reply.usage == AUTO else None
        if usage is None or found is None:
            return usage
        prefix, whole, ttl = found
        written = max(len(prefix) // 4, 1)
        usage["input_tokens"] = max(len(whole) // 4 - written, 1)
        if prefix in self.cached:
            usage["cache_read_tokens"] = written
        else:
            self.cached.add(prefix)
            usage["cache_write_tokens"] = written
            usage["cache_write_1h_tokens"] = written if ttl == "1h" else 0
        return usage

    # ── non-streaming ──
    def render(self, reply: Reply, ctx: Ctx) -> Any:
        content: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        content += [_tool_use(spec, _input(spec)) for spec in reply.tool_call_specs()]
        message = _message(reply, ctx, content, _stop_reason(reply))
        usage = self.usage(reply, ctx)
        if usage is not None:
            message["usage"] = _usage(usage)
        return message

    # ── streaming ──
    def render_stream(self, reply: Reply, ctx: Ctx) -> Iterable[Any]:
        usage = self.usage(reply, ctx)
        start = _message(reply, ctx, [], None)
        if usage is not None:  # provisional output count, as the real API sends
            start["usage"] = {**_usage(usage), "output_tokens": min(usage["output_tokens"], 1)}
        yield "message_start", {"type": "message_start", "message": start}
        index = 0
        if reply.text:
            yield from _block(index, {"type": "text", "text": ""},
                              ({"type": "text_delta", "text": p} for p in reply.text_pieces()))
            index += 1
        for spec in reply.tool_call_specs():
            args = spec.arguments_json()
            pieces = _split(args, reply.chunk_size)
            yield from _block(index, _tool_use(spec, {}),
                              ({"type": "input_json_delta", "partial_json": p} for p in pieces))
            index += 1
        delta: dict[str, Any] = {"type": "message_delta",
                                 "delta": {"stop_reason": _stop_reason(reply), "stop_sequence": None}}
        if usage is not None:  # cumulative: the whole count, not an increment
            delta["usage"] = _usage(usage, with_breakdown=False)
        yield "message_delta", delta
        yield "message_stop", {"type": "message_stop"}

    # ── errors ──
    def render_error(self, reply: Reply, ctx: Ctx) -> Any:
        status = reply.status
        kind = _ERROR_TYPE.get(status, "api_error" if status >= 500 else "invalid_request_error")
        message = reply.error if isinstance(reply.error, str) else f"FakeProvider: scripted {status}"
        return {"type": "error", "error": {"type": kind, "message": message},
                "request_id": f"req_fake{ctx.seq:06d}"}


def _cache_prefix(body: Any) -> tuple[str, str, str | None] | None:
    """(JSON of the blocks up to the last ``cache_control``, JSON of all, its ttl), or None."""
    if not isinstance(body, dict):
        return None
    system = body.get("system")
    items: list[Any] = list(body.get("tools") or [])
    items += system if isinstance(system, list) else [system] if system else []
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        items += content if isinstance(content, list) else [content]
    marked = [i for i, item in enumerate(items) if isinstance(item, dict) and item.get("cache_control")]
    if not marked:
        return None
    last = marked[-1]
    ttl = items[last]["cache_control"].get("ttl")
    return json.dumps(items[:last + 1]), json.dumps(items), ttl


def _message(reply: Reply, ctx: Ctx, content: list[dict[str, Any]], stop: str | None) -> dict[str, Any]:
    return {"id": f"msg_fake{ctx.seq:06d}", "type": "message", "role": "assistant",
            "model": reply.model or ctx.model, "content": content,
            "stop_reason": stop, "stop_sequence": None}


def _stop_reason(reply: Reply) -> str:
    finish = reply.neutral_finish()
    return _STOP_REASON.get(finish, finish)  # vendor-native values pass through


def _tool_use(spec: ToolCallSpec, input_: Any) -> dict[str, Any]:
    return {"type": "tool_use", "id": spec.id, "name": spec.name, "input": input_}


def _input(spec: ToolCallSpec) -> Any:
    """The tool input as JSON; arguments that are not JSON are served as the raw string."""
    try:
        return json.loads(spec.arguments_json())
    except ValueError:
        return spec.arguments_json()


def _usage(u: dict[str, int], with_breakdown: bool = True) -> dict[str, Any]:
    """Neutral buckets -> Anthropic usage (``input_tokens`` excludes cache reads and writes).

    ``cache_write_tokens`` is every write; its ``cache_write_1h_tokens`` part goes to
    ``cache_creation.ephemeral_1h_input_tokens``, the rest to the 5-minute bucket.
    """
    out: dict[str, Any] = {"input_tokens": u["input_tokens"],
                           "cache_creation_input_tokens": u["cache_write_tokens"],
                           "cache_read_input_tokens": u["cache_read_tokens"]}
    if with_breakdown:
        written_1h = u.get("cache_write_1h_tokens", 0)  # part of cache_write_tokens
        out["cache_creation"] = {"ephemeral_5m_input_tokens": u["cache_write_tokens"] - written_1h,
                                 "ephemeral_1h_input_tokens": written_1h}
    out["output_tokens"] = u["output_tokens"]
    if u["reasoning_tokens"]:
        out["output_tokens_details"] = {"thinking_tokens": u["reasoning_tokens"]}
    if with_breakdown:
        out["service_tier"] = "standard"
    return out


def _block(index: int, start: dict[str, Any], deltas: Iterable[dict[str, Any]]) -> Iterator[Any]:
    yield "content_block_start", {"type": "content_block_start", "index": index, "content_block": start}
    if index == 0:
        yield "ping", {"type": "ping"}
    for delta in deltas:
        yield "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}
    yield "content_block_stop", {"type": "content_block_stop", "index": index}


def _split(text: str, size: int) -> list[str]:
    n = max(size, 1)
    return [text[i:i + n] for i in range(0, len(text), n)]
