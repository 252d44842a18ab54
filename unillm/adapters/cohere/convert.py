"""Cohere v2 chat <-> unillm, as pure functions (no I/O, no SDK import).

Request side: `to_request` turns a `ChatRequest` into keyword arguments for
``cohere.ClientV2.chat`` / ``chat_stream``. Response side: `from_response`,
`usage_from` and `StreamState` accept the SDK's objects or their plain JSON
dicts alike, so ``unillm.track(raw)`` can reuse them.

Vendor semantics worth knowing:

* Cohere bills ``usage.billed_units``; ``usage.tokens`` counts what the model
  processed (it adds a prompt template) and can be much larger. Buckets come
  from ``billed_units`` only. Cohere has no cache or reasoning price, so
  ``cached_tokens`` stays informational and ``reasoning_tokens`` is 0.
* With tool calls the model's text is its ``tool_plan``; it round-trips as the
  assistant message's ``content``.
* Stream usage arrives once, on ``message-end``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ... import errors
from ...parts import refuse_media
from ...types import (
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FinishReason,
    FunctionCall,
    ImagePart,
    Message,
    ResponseMessage,
    StreamChunk,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
    vendor_usage,
    whole_usage,
)

if TYPE_CHECKING:
    from ...profiles import ProviderSettings

FINISH_REASONS: dict[str, FinishReason] = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
    "ERROR": "error",
    "TIMEOUT": "error",
}


_TOOL_CHOICES = {"none": "NONE", "required": "REQUIRED"}

# keyword arguments ClientV2.chat accepts; other `extra` keys travel in the request body
_SDK_KWARGS = frozenset({
    "strict_tools", "documents", "citation_options", "safety_mode", "logprobs", "thinking",
    "priority", "k", "p",
})


# ── request ──────────────────────────────────────────────────────────────────

class _Params:
    """Collects SDK kwargs, refusing (or dropping) what the vendor cannot honour."""

    def __init__(self, request: ChatRequest, settings: ProviderSettings) -> None:
        self.request, self.settings = request, settings
        self.kwargs: dict[str, Any] = {}

    def unsupported(self, param: str, hint: str = "") -> None:
        self.request.unsupported(self.settings.name, param, hint)  # raises unless drop_params

    def put(self, name: str, value: Any, *, allowed: bool = True, param: str = "") -> None:
        if value is None:
            return
        if allowed:
            self.kwargs[name] = value
        else:
            self.unsupported(param or name)


def to_request(request: ChatRequest, model: str, settings: ProviderSettings) -> dict[str, Any]:
    """SDK keyword arguments for ``ClientV2.chat`` (``request_options`` carries body extras)."""
    caps = settings.capabilities
    p = _Params(request, settings)
    p.kwargs["model"] = model
    p.kwargs["messages"] = [m for m in (_message(msg, p) for msg in request.messages) if m]
    _tools(p)
    _response_format(p)
    p.put("temperature", request.temperature)
    p.put("p", request.top_p, allowed=caps.top_p, param="top_p")
    p.put("k", request.top_k)
    p.put("max_tokens", request.max_tokens)
    p.put("stop_sequences", request.stop, allowed=caps.stop, param="stop")
    p.put("seed", request.seed, allowed=caps.seed, param="seed")
    p.put("frequency_penalty", request.frequency_penalty)
    p.put("presence_penalty", request.presence_penalty)
    if request.reasoning_effort is not None:
        p.unsupported("reasoning_effort",
                      "Cohere takes extra={'thinking': {'type': 'enabled', 'token_budget': N}}")
    if request.user is not None:
        p.unsupported("user")
    _extra(p)
    return p.kwargs


def _message(msg: Message, p: _Params) -> dict[str, Any] | None:
    if msg.role in ("system", "developer"):
        return {"role": "system", "content": msg.text()}
    if msg.role == "user":
        return {"role": "user", "content": _user_content(msg, p)}
    if msg.role == "tool":
        return {"role": "tool", "tool_call_id": msg.tool_call_id, "content": msg.text()}
    out: dict[str, Any] = {"role": "assistant"}
    if msg.tool_calls:
        out["tool_calls"] = [{"id": tc.id, "type": "function",
                              "function": {"name": tc.function.name, "arguments": tc.function.arguments}}
                             for tc in msg.tool_calls]
        if msg.text():
            out["tool_plan"] = msg.text()
    else:
        out["content"] = msg.text()
    return out


def _user_content(msg: Message, p: _Params) -> str | list[dict[str, Any]]:
    refuse_media([msg], p.settings.name, (), "Cohere's Chat API takes text and images only")
    if not msg.has_images():
        return msg.text()
    if not p.settings.capabilities.images:
        p.unsupported("images", f"the {p.settings.name} profile has capabilities.images = false")
        return msg.text()
    parts: list[dict[str, Any]] = []
    for part in msg.content if isinstance(msg.content, list) else []:
        if isinstance(part, ImagePart):
            image = {"url": part.image_url.url}
            if part.image_url.detail:
                image["detail"] = part.image_url.detail
            parts.append({"type": "image_url", "image_url": image})
        elif isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
    return parts


def _tools(p: _Params) -> None:
    req, caps = p.request, p.settings.capabilities
    if req.tools:
        if not caps.tools:
            p.unsupported("tools")
            return
        p.kwargs["tools"] = [_tool(t.function) for t in req.tools]
        if any(t.function.strict for t in req.tools):
            p.kwargs["strict_tools"] = True
    if req.parallel_tool_calls is False:
        p.unsupported("parallel_tool_calls", "Cohere cannot turn parallel tool calls off")
    choice = req.tool_choice
    if choice is None or choice == "auto" or not req.tools or "tools" not in p.kwargs:
        return
    if isinstance(choice, dict):
        p.unsupported("tool_choice", "Cohere accepts only 'auto', 'none' and 'required'")
    elif not caps.tool_choice:
        p.unsupported("tool_choice")
    else:
        p.kwargs["tool_choice"] = _TOOL_CHOICES[choice]


def _tool(fn: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": fn.name, "parameters": fn.parameters}
    if fn.description:
        out["description"] = fn.description
    return {"type": "function", "function": out}


def _response_format(p: _Params) -> None:
    fmt, caps = p.request.response_format, p.settings.capabilities
    if fmt is None or fmt.type == "text":
        return
    if fmt.type == "json_object":
        p.put("response_format", {"type": "json_object"}, allowed=caps.json_object, param="response_format")
    elif fmt.json_schema is not None:
        p.put("response_format", {"type": "json_object", "json_schema": fmt.json_schema.schema_},
              allowed=caps.json_schema, param="response_format")


def _extra(p: _Params) -> None:
    body = {}
    for key, value in p.request.extra.items():
        if key in _SDK_KWARGS:
            p.kwargs[key] = value
        else:
            body[key] = value
    if body:
        p.kwargs["request_options"] = {"additional_body_parameters": body}


# ── response ─────────────────────────────────────────────────────────────────

def plain(raw: Any) -> Any:
    """An SDK object as its JSON dict (None fields left out); dicts pass through."""
    if raw is None or isinstance(raw, dict):
        return raw
    dump = getattr(raw, "model_dump", None)
    return dump(mode="json") if dump is not None else raw


def usage_from(raw_usage: Any) -> Usage | None:
    """Billing buckets from ``usage.billed_units``; None when Cohere billed nothing visible."""
    u = plain(raw_usage)
    billed = (u or {}).get("billed_units")
    if not billed or (billed.get("input_tokens") is None and billed.get("output_tokens") is None):
        return None
    return vendor_usage(input=billed.get("input_tokens"), output=billed.get("output_tokens"))


def finish_reason(raw: str | None) -> FinishReason | None:
    return FINISH_REASONS.get(raw.upper(), "stop") if raw else None


def _tool_call(tc: dict[str, Any]) -> ToolCall:
    fn = tc.get("function") or {}
    return ToolCall(id=tc.get("id") or "", function=FunctionCall(name=fn.get("name") or "",
                                                               arguments=fn.get("arguments") or "{}"))


def detect(raw: Mapping[str, Any]) -> bool:
    """True when the JSON mapping ``raw`` looks like a v2 chat response (for ``unillm.track``)."""
    return "message" in raw and "finish_reason" in raw


def from_response(raw: Any, provider: str, *, model: str = "", created: int | None = None) -> ChatResponse:
    """A `ChatResponse` from a v2 chat response (SDK object or JSON dict); cost stays None.

    Cohere's response names no model, so the caller passes the one it asked for.
    """
    body = plain(raw)
    msg = body.get("message") or {}
    text = "".join(c.get("text") or "" for c in msg.get("content") or [] if c.get("type", "text") == "text")
    calls = [_tool_call(tc) for tc in msg.get("tool_calls") or []] or None
    if calls and not text:
        text = msg.get("tool_plan") or ""
    message = ResponseMessage(content=text or None, tool_calls=calls)
    return ChatResponse(
        id=body.get("id") or "", created=int(time.time()) if created is None else created, model=model,
        choices=[Choice(message=message, finish_reason=finish_reason(body.get("finish_reason")))],
        usage=usage_from(body.get("usage")), provider=provider)


# ── stream ───────────────────────────────────────────────────────────────────

class StreamState:
    """Turns v2 stream events into OpenAI-shaped chunks, one event at a time.

    ``feed`` returns the chunks an event produces (often none). The
    ``message-end`` event yields the last chunk, with the finish reason and the
    vendor's usage (taken as reported, never summed). ``finished`` tells a
    complete stream from a cut one.
    """

    def __init__(self, provider: str, model: str, created: int | None = None) -> None:
        self.provider, self.model = provider, model
        self.created = int(time.time()) if created is None else created
        self.id = ""
        self.usage: Usage | None = None
        self.finish_reason: FinishReason | None = None
        self.finished = False
        self._tool_index: dict[int, int] = {}

    @property
    def complete(self) -> bool:
        """True once ``message-end`` arrived."""
        return self.finished

    def reported(self) -> tuple[Usage | None, frozenset[str]]:
        """``message-end``'s usage, once it arrived (the only usage a Cohere stream reports)."""
        return whole_usage(self.usage)

    def feed(self, event: Any) -> list[StreamChunk]:
        ev = plain(event) or {}
        if isinstance(ev.get("data"), str):
            # the SDK logs an event whose data is not JSON and hands it on as its raw SSE
            # fields; skipping it would lose part of the answer
            raise errors.ResponseError(
                f"Cohere sent a stream event that is not valid JSON: {ev['data'][:200]!r}",
                provider=self.provider, model=self.model)
        kind = ev.get("type")
        delta_msg = (ev.get("delta") or {}).get("message") or {}
        if kind == "message-start":
            self.id = ev.get("id") or self.id
            return [self._chunk(Delta(role="assistant"))]
        if kind in ("content-start", "content-delta"):
            text = (delta_msg.get("content") or {}).get("text")
            return [self._chunk(Delta(content=text))] if text else []
        if kind == "tool-plan-delta":
            plan = delta_msg.get("tool_plan")
            return [self._chunk(Delta(content=plan))] if plan else []
        if kind == "tool-call-start":
            return [self._tool_start(ev.get("index"), delta_msg.get("tool_calls") or {})]
        if kind == "tool-call-delta":
            args = ((delta_msg.get("tool_calls") or {}).get("function") or {}).get("arguments")
            return [self._tool_args(ev.get("index"), args)] if args else []
        if kind == "message-end":
            return [self._end(ev.get("delta") or {})]
        return []  # content-end, tool-call-end, citations, debug: nothing to say

    def _chunk(self, delta: Delta, finish: FinishReason | None = None,
               usage: Usage | None = None) -> StreamChunk:
        return StreamChunk(id=self.id, created=self.created, model=self.model, provider=self.provider,
                           choices=[ChunkChoice(delta=delta, finish_reason=finish)], usage=usage)

    def _index(self, vendor_index: int | None) -> int:
        key = vendor_index if vendor_index is not None else len(self._tool_index)
        return self._tool_index.setdefault(key, len(self._tool_index))

    def _tool_start(self, vendor_index: int | None, tc: dict[str, Any]) -> StreamChunk:
        fn = tc.get("function") or {}
        call = ToolCallDelta(index=self._index(vendor_index), id=tc.get("id"), type="function",
                             function={"name": fn.get("name") or "", "arguments": fn.get("arguments") or ""})
        return self._chunk(Delta(tool_calls=[call]))

    def _tool_args(self, vendor_index: int | None, args: str) -> StreamChunk:
        key = vendor_index if vendor_index is not None else max(self._tool_index, default=0)
        call = ToolCallDelta(index=self._index(key), function={"arguments": args})
        return self._chunk(Delta(tool_calls=[call]))

    def _end(self, delta: dict[str, Any]) -> StreamChunk:
        self.finished = True
        self.finish_reason = finish_reason(delta.get("finish_reason")) or "stop"
        self.usage = usage_from(delta.get("usage"))
        return self._chunk(Delta(), self.finish_reason, self.usage)
