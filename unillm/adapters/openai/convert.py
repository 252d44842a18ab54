"""OpenAI Chat Completions <-> unillm, as pure functions (no I/O, no SDK import).

Everything here accepts the SDK's objects *or* their plain JSON dicts, so
``unillm.track(raw)`` can reuse it for code that calls the SDK directly.

Usage semantics (Chat Completions): ``prompt_tokens`` *includes*
``prompt_tokens_details.cached_tokens`` (and ``cache_write_tokens``), and
``completion_tokens`` *includes* ``completion_tokens_details.reasoning_tokens``.
We split them into non-overlapping buckets. The same function reads the
Responses/Batch spelling (``input_tokens``/``output_tokens`` with
``*_tokens_details``), DeepSeek's ``prompt_cache_hit_tokens``, and vendors that
count reasoning *outside* ``completion_tokens`` (their ``total_tokens`` says so).
"""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from ... import errors
from ...extra import merge_extra
from ...parts import openai_dump
from ...types import (
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FinishReason,
    FunctionCall,
    Message,
    ResponseMessage,
    StreamChunk,
    ToolCall,
    ToolCallDelta,
    Usage,
    vendor_usage,
    whole_usage,
)

if TYPE_CHECKING:
    from ...profiles import ProviderSettings

__all__ = ["to_request", "from_response", "detect", "usage_from", "finish_reason", "StreamState", "SDK_KWARGS"]

#: keyword arguments ``chat.completions.create`` accepts; other ``extra`` keys go to ``extra_body``
SDK_KWARGS = frozenset({
    "audio", "frequency_penalty", "function_call", "functions", "logit_bias", "logprobs",
    "max_completion_tokens", "max_tokens", "metadata", "modalities", "moderation", "n",
    "parallel_tool_calls", "prediction", "presence_penalty", "prompt_cache_key",
    "prompt_cache_options", "prompt_cache_retention", "reasoning_effort", "response_format",
    "safety_identifier", "seed", "service_tier", "stop", "store", "stream_options", "temperature",
    "tool_choice", "tools", "top_logprobs", "top_p", "user", "verbosity", "web_search_options",
    "extra_headers", "extra_query", "extra_body", "timeout",
})

_FINISH: dict[str, FinishReason] = {
    "stop": "stop", "length": "length", "tool_calls": "tool_calls",
    "content_filter": "content_filter", "function_call": "tool_calls",
    # spellings seen from OpenAI-compatible servers
    "eos": "stop", "end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
    "model_length": "length", "error": "error", "insufficient_system_resource": "error",
}


def field(obj: Any, name: str, default: Any = None) -> Any:
    """``obj[name]`` for a mapping, ``obj.name`` otherwise; ``default`` when absent or None."""
    if type(obj) is dict:  # the JSON case, and the fast one
        value = obj.get(name)
    else:  # an SDK object: attribute first (isinstance against Mapping is a slow ABC check)
        value = getattr(obj, name, None)
        if value is None and isinstance(obj, Mapping):
            value = obj.get(name)
    return default if value is None else value


# ── request ──────────────────────────────────────────────────────────────────

def to_request(request: ChatRequest, model: str, settings: ProviderSettings, *,
               stream: bool = False) -> dict[str, Any]:
    """SDK kwargs for ``chat.completions.create``, honouring the profile's capabilities.

    A parameter the vendor cannot honour raises `UnsupportedParamError` naming
    vendor and parameter, or is dropped when ``request.drop_params``.
    """
    gate = _Gate(settings.name, request)
    caps = settings.capabilities
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": [_message(m, gate, caps.images) for m in request.messages],
    }
    _tools(request, kwargs, gate, caps.tools, caps.tool_choice)
    _response_format(request, kwargs, gate, caps.json_object, caps.json_schema)
    for name in ("temperature", "frequency_penalty", "presence_penalty", "reasoning_effort", "user"):
        if getattr(request, name) is not None:
            kwargs[name] = getattr(request, name)
    for name, ok in (("top_p", caps.top_p), ("stop", caps.stop), ("seed", caps.seed),
                     ("top_k", caps.top_k)):  # off for the protocol (the registry's default)
        if getattr(request, name) is not None and gate.allows(ok, name):
            kwargs[name] = getattr(request, name)
    if request.max_tokens is not None:
        kwargs[max_tokens_key(model, settings)] = request.max_tokens
    if stream:
        kwargs["stream"] = True
        if caps.stream_usage:
            kwargs["stream_options"] = {"include_usage": True}
    merge_extra(request.extra, SDK_KWARGS, kwargs)
    return kwargs


def max_tokens_key(model: str, settings: ProviderSettings) -> str:
    """``max_completion_tokens`` for the models the profile names in its capability of that
    name (OpenAI's o-series and gpt-5, which reject ``max_tokens``), else ``max_tokens``."""
    globs = settings.capabilities.max_completion_tokens
    return "max_completion_tokens" if any(fnmatchcase(model, g) for g in globs) else "max_tokens"


class _Gate:
    """Says whether an unsupported parameter is dropped (drop_params) or is an error."""

    def __init__(self, provider: str, request: ChatRequest) -> None:
        self.provider, self.request = provider, request

    def allows(self, supported: bool, param: str, hint: str = "") -> bool:
        if supported:
            return True
        self.request.unsupported(self.provider, param, hint)  # raises unless drop_params
        return False


def _message(m: Message, gate: _Gate, images: bool) -> dict[str, Any]:
    out = openai_dump(m)  # files and input_audio as OpenAI defines them; cache_control dropped
    if m.has_images() and not gate.allows(images, "images", "image content parts in messages"):
        parts = [p for p in out["content"] if p.get("type") != "image_url"]
        out["content"] = parts if parts else ""
    return out


def _tools(request: ChatRequest, kwargs: dict[str, Any], gate: _Gate, tools_ok: bool,
           choice_ok: bool) -> None:
    if not request.tools or not gate.allows(tools_ok, "tools"):
        return
    kwargs["tools"] = [t.model_dump(exclude_none=True, exclude={"cache_control"}) for t in request.tools]
    if request.tool_choice is not None and gate.allows(choice_ok, "tool_choice"):
        kwargs["tool_choice"] = request.tool_choice
    if request.parallel_tool_calls is not None:
        kwargs["parallel_tool_calls"] = request.parallel_tool_calls


def _response_format(request: ChatRequest, kwargs: dict[str, Any], gate: _Gate, json_object: bool,
                     json_schema: bool) -> None:
    fmt = request.response_format
    if fmt is None:
        return
    ok = {"text": True, "json_object": json_object, "json_schema": json_schema}[fmt.type]
    if gate.allows(ok, "response_format", f"type {fmt.type!r}"):
        kwargs["response_format"] = fmt.model_dump(by_alias=True, exclude_none=True)



# ── response ─────────────────────────────────────────────────────────────────

def finish_reason(value: Any) -> FinishReason | None:
    """The vendor's finish reason in our vocabulary; None when absent or unknown."""
    return _FINISH.get(value) if isinstance(value, str) else None


def detect(raw: Mapping[str, Any]) -> bool:
    """True when the JSON mapping ``raw`` looks like a Chat Completions response (for ``unillm.track``)."""
    return "choices" in raw or raw.get("object") == "chat.completion"


def from_response(raw: Any, provider: str) -> ChatResponse:
    """A ``ChatCompletion`` (SDK object or JSON dict) as our `ChatResponse` (cost stays None)."""
    choices = field(raw, "choices") if raw is not None and not isinstance(raw, (str, bytes)) else None
    if not isinstance(choices, list):
        raise errors.ResponseError("the vendor's answer is not a chat completion (no 'choices')",
                                   provider=provider, body=raw if isinstance(raw, (str, dict)) else None)
    return ChatResponse(
        id=str(field(raw, "id", "")),
        created=int(field(raw, "created", 0)),
        model=str(field(raw, "model", "")),
        choices=[_choice(c, i) for i, c in enumerate(choices)],
        usage=usage_from(field(raw, "usage")),
        provider=provider,
    )


def _choice(raw: Any, position: int) -> Choice:
    msg = field(raw, "message", {})
    found = [_tool_call(tc) for tc in field(msg, "tool_calls", [])]
    calls = [tc for tc in found if tc is not None]
    return Choice(
        index=int(field(raw, "index", position)),
        message=ResponseMessage(content=field(msg, "content"), tool_calls=calls or None,
                                refusal=field(msg, "refusal")),
        finish_reason=finish_reason(field(raw, "finish_reason")),
    )


def _tool_call(raw: Any) -> ToolCall | None:
    fn = field(raw, "function")
    if fn is None:  # custom (non-function) tool calls have no place in our shape
        return None
    return ToolCall(id=str(field(raw, "id", "")),
                    function=FunctionCall(name=str(field(fn, "name", "")),
                                          arguments=str(field(fn, "arguments", "") or "{}")))


def usage_from(raw: Any) -> Usage | None:
    """The vendor's usage as billing buckets; None when it reported none.

    Validated (never clamped) by `vendor_usage`: cached tokens above the prompt are a
    `Usage.problem`, not silently cut down.
    """
    if raw is None:
        return None
    if field(raw, "prompt_tokens") is None and field(raw, "input_tokens") is not None:
        prompt, completion = field(raw, "input_tokens", 0), field(raw, "output_tokens", 0)
        pdet, cdet = field(raw, "input_tokens_details"), field(raw, "output_tokens_details")
    elif field(raw, "prompt_tokens") is not None or field(raw, "completion_tokens") is not None:
        prompt, completion = field(raw, "prompt_tokens", 0), field(raw, "completion_tokens", 0)
        pdet, cdet = field(raw, "prompt_tokens_details"), field(raw, "completion_tokens_details")
    else:
        return None
    cached = field(pdet, "cached_tokens") or field(raw, "prompt_cache_hit_tokens")
    reasoning = field(cdet, "reasoning_tokens")
    total = field(raw, "total_tokens")
    # a vendor that counts reasoning outside completion_tokens says so in its total
    outside = bool(reasoning) and _number(total) and _number(prompt) and _number(completion) \
        and _number(reasoning) and total == prompt + completion + reasoning
    return vendor_usage(prompt=prompt, cache_read=cached, cache_write=field(pdet, "cache_write_tokens"),
                        output=completion, reasoning=reasoning, reasoning_in_output=not outside)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# ── streaming ────────────────────────────────────────────────────────────────

class StreamState:
    """Turns ``ChatCompletionChunk`` events (SDK objects or dicts) into our `StreamChunk`s.

    Content chunks pass through without usage. The vendor's usage (OpenAI sends it
    in a last chunk with empty ``choices``; some compatible vendors attach it to
    the last content chunk, or repeat it cumulatively) is remembered, the latest
    report winning, and `finish` yields it once on a final usage-only chunk.
    """

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.id, self.model, self.created = "", "", 0
        self.usage: Usage | None = None
        self.finish_reason: FinishReason | None = None
        self.saw_finish = False

    @property
    def complete(self) -> bool:
        """True once the vendor sent a finish reason (a cut stream never does)."""
        return self.saw_finish

    def reported(self) -> tuple[Usage | None, frozenset[str]]:
        """The usage chunk's figures once it arrived (all buckets: it is the call's whole usage)."""
        return whole_usage(self.usage)

    def feed(self, event: Any) -> list[StreamChunk]:
        """Chunks for one SDK event (zero or one)."""
        self.id = self.id or str(field(event, "id", ""))
        self.model = self.model or str(field(event, "model", ""))
        self.created = self.created or int(field(event, "created", 0))
        usage = usage_from(field(event, "usage"))
        if usage is not None:
            self.usage = usage  # cumulative: replace, never add
        choices = field(event, "choices", [])
        if not choices:
            return []
        return [self._chunk([self._chunk_choice(c, i) for i, c in enumerate(choices)])]

    def finish(self) -> list[StreamChunk]:
        """The closing usage-only chunk, when the vendor reported usage."""
        if self.usage is None:
            return []
        return [self._chunk([], usage=self.usage)]

    def _chunk(self, choices: list[ChunkChoice], usage: Usage | None = None) -> StreamChunk:
        return StreamChunk(id=self.id, created=self.created, model=self.model, choices=choices,
                           usage=usage, provider=self.provider)

    def _chunk_choice(self, raw: Any, position: int) -> ChunkChoice:
        raw_finish = field(raw, "finish_reason")
        if raw_finish is not None:
            self.saw_finish = True
            self.finish_reason = finish_reason(raw_finish)
        delta = field(raw, "delta", {})
        calls = [_tool_call_delta(tc, i) for i, tc in enumerate(field(delta, "tool_calls", []))]
        return ChunkChoice(
            index=int(field(raw, "index", position)),
            delta=Delta(role="assistant" if field(delta, "role") == "assistant" else None,
                        content=field(delta, "content"), tool_calls=calls or None),
            finish_reason=finish_reason(raw_finish),
        )


def _tool_call_delta(raw: Any, position: int) -> ToolCallDelta:
    fn = field(raw, "function")
    parts = {k: str(v) for k in ("name", "arguments") if (v := field(fn, k)) is not None} if fn else {}
    return ToolCallDelta(index=int(field(raw, "index", position)), id=field(raw, "id"),
                         type="function" if field(raw, "type") == "function" else None,
                         function=parts or None)
