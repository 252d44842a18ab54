"""Anthropic Messages API <-> unillm, as pure functions (no I/O, no SDK import).

Request side: `to_request` turns a `ChatRequest` into keyword arguments for
``client.messages.create``. Response side: `from_response`, `usage_from` and
`StreamState` accept the SDK's objects *or* their plain JSON dicts, so
``unillm.track(raw)`` can reuse them for code that calls the SDK directly.

Vendor facts encoded here (SDK 2.x, ``anthropic-version: 2026-10-21``):

- ``max_tokens`` is required: without one we send `DEFAULT_MAX_TOKENS`.
- ``system``/``developer`` messages go to the top-level ``system`` prompt; tool
  results travel as ``tool_result`` blocks in a user turn; consecutive turns of
  one role are merged, as the API requires alternating roles.
- Sampling parameters (``temperature``, ``top_p``, ``top_k``) are rejected by
  this API version at any value (the profile's capabilities say so:
  ``temperature = top_p = top_k = false``), and there is no ``seed`` or penalty:
  each is dropped or refused as the request's ``drop_params`` says.
- ``usage.input_tokens`` excludes cache reads and cache writes, so it maps to
  our uncached bucket as is; ``output_tokens`` includes thinking tokens.
  ``cache_creation_input_tokens`` is every cache write; the 1-hour part (billed
  higher) is ``cache_creation.ephemeral_1h_input_tokens``.
- Streams report usage twice: ``message_start`` (input + cache, a provisional
  output count) and ``message_delta`` (cumulative). Later values replace earlier
  ones; nothing is summed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ...errors import InvalidRequestError
from ...extra import merge_extra
from ...parts import anthropic_block, refuse_media
from ...types import (
    ALL_BUCKETS,
    PROMPT_BUCKETS,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FinishReason,
    FunctionCall,
    FunctionDef,
    Message,
    ResponseMessage,
    StreamChunk,
    ToolCall,
    ToolCallDelta,
    Usage,
    vendor_usage,
)

if TYPE_CHECKING:
    from ...profiles import ProviderSettings

__all__ = ["DEFAULT_MAX_TOKENS", "to_request", "from_response", "usage_from", "finish_reason",
           "StreamState"]

#: ``max_tokens`` sent when the request has none (the Messages API requires one).
DEFAULT_MAX_TOKENS = 4096

_STOP_REASONS: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

_SAMPLING_HINT = "anthropic-version 2026-10-21 rejects sampling parameters at any value"
_NO_PARAM = {
    "seed": "the Messages API has no seed",
    "frequency_penalty": "the Messages API has no penalties",
    "presence_penalty": "the Messages API has no penalties",
}

_EFFORT = {"minimal": "low", "low": "low", "medium": "medium", "high": "high"}

_PROMPT_BUCKETS = frozenset(PROMPT_BUCKETS)

# the cumulative usage fields a stream reports; later events replace earlier values
_USAGE_FIELDS = ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens",
                 "cache_creation", "output_tokens", "output_tokens_details")


# ── request ──────────────────────────────────────────────────────────────────

def to_request(request: ChatRequest, model: str, settings: ProviderSettings) -> dict[str, Any]:
    """SDK keyword arguments for ``messages.create`` (``stream`` is the caller's to add)."""
    provider, caps = settings.name, settings.capabilities
    for param, hint in _NO_PARAM.items():
        if getattr(request, param) is not None:
            request.unsupported(provider, param, hint)
    if request.has_images() and not caps.images:
        request.unsupported(provider, "images")
    refuse_media(request.messages, provider, ("file",), "the Messages API takes no audio input")
    system, messages = _messages(request.messages)
    kwargs: dict[str, Any] = {"model": model, "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
                              "messages": messages}
    sampling: dict[str, Any] = {}  # SDK 2.x has no such keywords: they ride in the body
    for param, ok in (("temperature", caps.temperature), ("top_p", caps.top_p), ("top_k", caps.top_k)):
        if getattr(request, param) is not None:
            if ok:
                sampling[param] = getattr(request, param)
            else:
                request.unsupported(provider, param, _SAMPLING_HINT)
    if system:
        kwargs["system"] = system
    if request.stop:
        if caps.stop:
            kwargs["stop_sequences"] = list(request.stop)
        else:
            request.unsupported(provider, "stop")
    kwargs.update(_tools(request, provider, caps.tools, caps.tool_choice))
    output_config = _output_config(request, provider, caps.json_object, caps.json_schema)
    if output_config:
        kwargs["output_config"] = output_config
    if request.user:
        kwargs["metadata"] = {"user_id": request.user}
    merge_extra(request.extra, SDK_KWARGS, kwargs)
    if sampling:
        kwargs["extra_body"] = {**sampling, **(kwargs.get("extra_body") or {})}
    return kwargs


#: keyword arguments ``messages.create`` takes; other ``extra`` keys ride in ``extra_body``
#: (the contract of what extra may hold at all: unillm.extra)
SDK_KWARGS = frozenset({
    "cache_control", "container", "diagnostics", "inference_geo", "metadata", "output_config",
    "service_tier", "speed", "stop_sequences", "system", "thinking", "tool_choice", "tools",
})



def _messages(messages: list[Message]) -> tuple[str | list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """Top-level system prompt (text blocks when one carries ``cache_control``), and
    user/assistant turns with same-role neighbours merged."""
    system: list[str] = []
    blocks: list[dict[str, Any]] = []  # the system prompt as text blocks, cache_control kept
    turns: list[dict[str, Any]] = []
    for m in messages:
        if m.role in ("system", "developer"):
            system.append(m.text())
            blocks.extend(_as_blocks(_content(m)))
            continue
        role, content = _turn(m)
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] = _as_blocks(turns[-1]["content"]) + _as_blocks(content)
        else:
            turns.append({"role": role, "content": content})
    if any("cache_control" in b for b in blocks):
        return blocks, turns
    return "\n\n".join(system) or None, turns


def _turn(m: Message) -> tuple[str, Any]:
    if m.role == "tool":
        return "user", [{"type": "tool_result", "tool_use_id": m.tool_call_id, "content": _content(m)}]
    if m.role == "assistant" and m.tool_calls:
        text = _as_blocks(_content(m)) if m.content else []
        return "assistant", text + [_tool_use(tc) for tc in m.tool_calls]
    return m.role, _content(m)


def _content(m: Message) -> Any:
    """A string stays a string; parts become text, image and document blocks (`unillm.parts`)."""
    if isinstance(m.content, str) or m.content is None:
        return m.content or ""
    return [anthropic_block(p, "anthropic") for p in m.content]


def _as_blocks(content: Any) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return list(content)


def _tool_use(tc: ToolCall) -> dict[str, Any]:
    try:
        args = tc.function.parsed_arguments()
    except ValueError as exc:
        raise InvalidRequestError(f"tool call {tc.id!r} has arguments that are not JSON: {exc}",
                                  param="messages") from None
    if not isinstance(args, dict):
        raise InvalidRequestError(f"tool call {tc.id!r} arguments must be a JSON object",
                                  param="messages")
    return {"type": "tool_use", "id": tc.id, "name": tc.function.name, "input": args}


def _tools(request: ChatRequest, provider: str, tools_ok: bool, choice_ok: bool) -> dict[str, Any]:
    if not request.tools:
        return {}
    if not tools_ok:
        request.unsupported(provider, "tools")
        return {}
    out: dict[str, Any] = {"tools": [_tool(t.function) for t in request.tools]}
    for tool, spec in zip(out["tools"], request.tools):
        if spec.cache_control is not None:
            tool["cache_control"] = spec.cache_control.model_dump(exclude_none=True)
    choice = _tool_choice(request.tool_choice, request.parallel_tool_calls)
    if choice is not None:
        if choice_ok:
            out["tool_choice"] = choice
        else:
            request.unsupported(provider, "tool_choice")
    return out


def _tool(fn: FunctionDef) -> dict[str, Any]:
    tool: dict[str, Any] = {"name": fn.name, "input_schema": fn.parameters}
    if fn.description:
        tool["description"] = fn.description
    if fn.strict is not None:
        tool["strict"] = fn.strict
    return tool


def _tool_choice(choice: Any, parallel: bool | None) -> dict[str, Any] | None:
    """OpenAI's auto/none/required/{function} -> Anthropic's auto/none/any/tool."""
    if choice is None and parallel is not False:
        return None
    if choice in (None, "auto"):
        out: dict[str, Any] = {"type": "auto"}
    elif choice == "none":
        return {"type": "none"}
    elif choice == "required":
        out = {"type": "any"}
    else:
        out = {"type": "tool", "name": choice["function"]["name"]}
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    return out


def _output_config(request: ChatRequest, provider: str, json_object_ok: bool,
                   json_schema_ok: bool) -> dict[str, Any]:
    """Native structured output (``output_config.format``) and ``effort``."""
    config: dict[str, Any] = {}
    if request.reasoning_effort:
        config["effort"] = _EFFORT[request.reasoning_effort]
    fmt = request.response_format
    if fmt is None or fmt.type == "text":
        return config
    ok = json_schema_ok if fmt.type == "json_schema" else json_object_ok
    if not ok:
        hint = "use response_format type 'json_schema'" if fmt.type == "json_object" else ""
        request.unsupported(provider, f"response_format={fmt.type}", hint)
        return config
    schema = fmt.json_schema.schema_ if fmt.json_schema else {"type": "object"}
    config["format"] = {"type": "json_schema", "schema": schema}
    return config


# ── response ─────────────────────────────────────────────────────────────────

def _get(obj: Any, key: str) -> Any:
    """A field of an SDK object or of its JSON dict; None when absent."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(key)
    return getattr(obj, key, None)


def finish_reason(stop_reason: str | None) -> FinishReason | None:
    """Anthropic ``stop_reason`` -> OpenAI ``finish_reason`` (unknown reasons -> "stop")."""
    if stop_reason is None:
        return None
    return _STOP_REASONS.get(stop_reason, "stop")


def usage_from(raw_usage: Any) -> Usage | None:
    """Anthropic usage (object or dict) -> our buckets; None when the vendor sent none.

    ``input_tokens`` already excludes ``cache_read_input_tokens`` and
    ``cache_creation_input_tokens``; ``output_tokens`` includes thinking tokens,
    reported separately in ``output_tokens_details.thinking_tokens``.
    ``cache_creation_input_tokens`` counts every cache write, of which
    ``cache_creation.ephemeral_1h_input_tokens`` were written with a 1-hour TTL.
    Validated, never clamped, by `vendor_usage`.
    """
    if raw_usage is None:
        return None
    by_ttl = _get(raw_usage, "cache_creation")
    written_1h = _get(by_ttl, "ephemeral_1h_input_tokens")
    written = _get(raw_usage, "cache_creation_input_tokens")
    if written is None and by_ttl is not None:  # only the breakdown was sent: its sum
        written = _sum(_get(by_ttl, "ephemeral_5m_input_tokens"), written_1h)
    return vendor_usage(input=_get(raw_usage, "input_tokens"),
                        cache_read=_get(raw_usage, "cache_read_input_tokens"),
                        cache_write=written, cache_write_1h=written_1h,
                        output=_get(raw_usage, "output_tokens"),
                        reasoning=_get(_get(raw_usage, "output_tokens_details"), "thinking_tokens"))


def _sum(*values: Any) -> Any:
    """The sum of the counts given; a value that is not a count is passed on to be reported."""
    numbers = [v for v in values if v is not None]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers):
        return sum(numbers)
    return next(v for v in numbers if not isinstance(v, (int, float)) or isinstance(v, bool))


def detect(raw: Mapping[str, Any]) -> bool:
    """True when the JSON mapping ``raw`` looks like a Messages API response (for ``unillm.track``)."""
    return raw.get("type") == "message" and "content" in raw


def from_response(raw: Any, provider: str, *, created: int | None = None) -> ChatResponse:
    """An Anthropic ``Message`` (SDK object or JSON dict) -> our `ChatResponse`.

    Text blocks are joined into ``content``; ``tool_use`` blocks become tool calls
    with JSON arguments; thinking blocks are not part of the answer. ``cost`` is
    left None (pricing is the Client's job). ``created`` defaults to now: the
    Messages API does not report one.
    """
    texts: list[str] = []
    tool_calls: list[ToolCall] = []
    for block in _get(raw, "content") or []:
        kind = _get(block, "type")
        if kind == "text":
            texts.append(_get(block, "text") or "")
        elif kind == "tool_use":
            tool_calls.append(ToolCall(id=_get(block, "id"), function=FunctionCall(
                name=_get(block, "name"), arguments=json.dumps(_get(block, "input") or {}))))
    message = ResponseMessage(content="".join(texts) if texts else None, tool_calls=tool_calls or None)
    return ChatResponse(
        id=_get(raw, "id") or "",
        created=int(time.time()) if created is None else created,
        model=_get(raw, "model") or "",
        choices=[Choice(message=message, finish_reason=finish_reason(_get(raw, "stop_reason")))],
        usage=usage_from(_get(raw, "usage")),
        provider=provider,
    )


# ── stream ───────────────────────────────────────────────────────────────────

class StreamState:
    """Folds raw Messages stream events (SDK objects or dicts) into OpenAI-shaped chunks.

    Feed every event to `feed`; it returns the chunks to yield (often none). The
    chunk made at ``message_stop`` carries the finish reason and, when the vendor
    reported any, the final usage. ``done`` turns True at ``message_stop``.
    """

    def __init__(self, provider: str, *, created: int | None = None) -> None:
        self.provider = provider
        self.created = int(time.time()) if created is None else created
        self.id = ""
        self.model = ""
        self.stop_reason: str | None = None
        self.done = False
        self._usage: dict[str, Any] | None = None
        self._final_usage = False  # message_delta's cumulative usage arrived
        self._tools: dict[int, int] = {}  # content block index -> tool call position

    @property
    def usage(self) -> Usage | None:
        """The usage reported so far (cumulative values, each taken once)."""
        return usage_from(self._usage)

    @property
    def complete(self) -> bool:
        """True once the vendor sent its stop reason (message_delta) or message_stop."""
        return self.done or self.stop_reason is not None

    def reported(self) -> tuple[Usage | None, frozenset[str]]:
        """The usage so far, and which of its buckets are the vendor's figures for the call:
        the prompt side from ``message_start``; the output too once ``message_delta`` came
        (``message_start``'s output count is provisional, not a figure for what followed)."""
        usage = self.usage
        if usage is None:
            return None, frozenset()
        return usage, ALL_BUCKETS if self._final_usage else _PROMPT_BUCKETS

    def feed(self, event: Any) -> list[StreamChunk]:
        handler = getattr(self, f"_on_{_get(event, 'type')}", None)
        return handler(event) if handler is not None else []

    def finish(self) -> StreamChunk:
        """The last chunk: finish reason plus usage."""
        self.done = True
        return self._chunk(Delta(), finish_reason(self.stop_reason) or "stop", self.usage)

    # one handler per event type; ping, content_block_stop and unknown events yield nothing
    def _on_message_start(self, event: Any) -> list[StreamChunk]:
        message = _get(event, "message")
        self.id = _get(message, "id") or self.id
        self.model = _get(message, "model") or self.model
        self._take_usage(_get(message, "usage"))
        return [self._chunk(Delta(role="assistant"))]

    def _on_content_block_start(self, event: Any) -> list[StreamChunk]:
        block = _get(event, "content_block")
        kind = _get(block, "type")
        if kind == "text" and _get(block, "text"):
            return [self._chunk(Delta(content=_get(block, "text")))]
        if kind != "tool_use":
            return []
        position = self._tools[_get(event, "index")] = len(self._tools)
        initial = _get(block, "input")
        call = ToolCallDelta(index=position, id=_get(block, "id"), type="function",
                             function={"name": _get(block, "name") or "",
                                       "arguments": json.dumps(initial) if initial else ""})
        return [self._chunk(Delta(tool_calls=[call]))]

    def _on_content_block_delta(self, event: Any) -> list[StreamChunk]:
        delta = _get(event, "delta")
        kind = _get(delta, "type")
        if kind == "text_delta":
            return [self._chunk(Delta(content=_get(delta, "text") or ""))]
        position = self._tools.get(_get(event, "index"))
        if kind == "input_json_delta" and position is not None:
            call = ToolCallDelta(index=position, function={"arguments": _get(delta, "partial_json") or ""})
            return [self._chunk(Delta(tool_calls=[call]))]
        return []  # thinking, signature and citation deltas are not part of the answer

    def _on_message_delta(self, event: Any) -> list[StreamChunk]:
        self.stop_reason = _get(_get(event, "delta"), "stop_reason") or self.stop_reason
        if _get(event, "usage") is not None:
            self._take_usage(_get(event, "usage"))
            self._final_usage = True
        return []

    def _on_message_stop(self, event: Any) -> list[StreamChunk]:
        return [self.finish()]

    def _take_usage(self, raw_usage: Any) -> None:
        """Cumulative usage: a reported field replaces the previous value, never adds to it."""
        if raw_usage is None:
            return
        merged = dict(self._usage or {})
        for key in _USAGE_FIELDS:
            value = _get(raw_usage, key)
            if value is not None:
                merged[key] = value
        self._usage = merged

    def _chunk(self, delta: Delta, finish: FinishReason | None = None,
               usage: Usage | None = None) -> StreamChunk:
        return StreamChunk(id=self.id, created=self.created, model=self.model, provider=self.provider,
                           choices=[ChunkChoice(delta=delta, finish_reason=finish)], usage=usage)
