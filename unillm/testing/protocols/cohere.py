"""FakeProvider: Cohere's v2 chat API (``POST /v2/chat``), JSON and SSE.

Shapes follow Cohere's API reference (see shared/refs/responses/cohere_*):
usage is ``{"billed_units": {...}, "tokens": {...}}`` where ``tokens`` adds the
prompt template Cohere wraps around the messages, so it is larger than what is
billed. With tool calls the reply's text becomes the model's ``tool_plan``.
Errors are ``{"id": ..., "message": ...}``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from typing import Any

from ..replies import Ctx, Reply, ToolCallSpec
from .base import Protocol

#: tokens Cohere adds around the prompt (the API reference example: 71 processed, 5 billed)
TEMPLATE_TOKENS = 66

_FINISH = {"stop": "COMPLETE", "length": "MAX_TOKENS", "tool_calls": "TOOL_CALL",
           "content_filter": "ERROR", "error": "ERROR"}


def _id(ctx: Ctx) -> str:
    return str(uuid.UUID(int=ctx.seq))


class CohereProtocol(Protocol):
    name = "cohere"
    route = re.compile(r"^.*/v2/chat/*$")

    # ── JSON ──
    def render(self, reply: Reply, ctx: Ctx) -> Any:
        calls = reply.tool_call_specs()
        message: dict[str, Any] = {"role": "assistant"}
        if calls:
            if reply.text:
                message["tool_plan"] = reply.text
            message["tool_calls"] = [_call(c, c.arguments_json()) for c in calls]
        else:
            message["content"] = [{"type": "text", "text": reply.text}]
        body: dict[str, Any] = {"id": _id(ctx), "message": message,
                                "finish_reason": _FINISH.get(reply.neutral_finish(), "COMPLETE")}
        usage = self.usage(reply, ctx)
        if usage is not None:
            body["usage"] = usage
        return body

    def usage(self, reply: Reply, ctx: Ctx) -> dict[str, Any] | None:
        """Cohere bills every prompt token at one rate: cache buckets fold into billed input."""
        u = ctx.usage(reply)
        if u is None:
            return None
        billed_in = u["input_tokens"] + u["cache_read_tokens"] + u["cache_write_tokens"]
        out: dict[str, Any] = {
            "billed_units": {"input_tokens": billed_in, "output_tokens": u["output_tokens"]},
            "tokens": {"input_tokens": billed_in + TEMPLATE_TOKENS, "output_tokens": u["output_tokens"]},
        }
        if u["cache_read_tokens"]:
            out["cached_tokens"] = u["cache_read_tokens"]
        return out

    # ── SSE ──
    def render_stream(self, reply: Reply, ctx: Ctx) -> Iterator[Any]:
        yield _event("message-start", id=_id(ctx), delta={"message": {"role": "assistant"}})
        calls = reply.tool_call_specs()
        if calls:
            yield from self._tool_events(reply, calls)
        elif reply.text:
            yield from self._text_events(reply)
        delta: dict[str, Any] = {"finish_reason": _FINISH.get(reply.neutral_finish(), "COMPLETE")}
        usage = self.usage(reply, ctx)
        if usage is not None:
            delta["usage"] = usage
        yield _event("message-end", delta=delta)

    def _text_events(self, reply: Reply) -> Iterator[Any]:
        yield _event("content-start", index=0,
                     delta={"message": {"content": {"type": "text", "text": ""}}})
        for piece in reply.text_pieces():
            yield _event("content-delta", index=0, delta={"message": {"content": {"text": piece}}})
        yield _event("content-end", index=0)

    def _tool_events(self, reply: Reply, calls: list[ToolCallSpec]) -> Iterator[Any]:
        for piece in reply.text_pieces():
            yield _event("tool-plan-delta", delta={"message": {"tool_plan": piece}})
        n = max(reply.chunk_size, 1)
        for i, call in enumerate(calls):
            yield _event("tool-call-start", index=i, delta={"message": {"tool_calls": _call(call, "")}})
            args = call.arguments_json()
            for j in range(0, len(args), n):
                yield _event("tool-call-delta", index=i,
                             delta={"message": {"tool_calls": {"function": {"arguments": args[j:j + n]}}}})
            yield _event("tool-call-end", index=i)

    # ── errors ──
    def render_error(self, reply: Reply, ctx: Ctx) -> Any:
        message = reply.error if isinstance(reply.error, str) else f"FakeProvider error {reply.status}"
        return {"id": _id(ctx), "message": message}


def _call(call: ToolCallSpec, arguments: str) -> dict[str, Any]:
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


def _event(kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    return kind, {"type": kind, **fields}
