"""Pure conversions between unillm's OpenAI-shaped types and Gemini's generateContent.

No I/O and no SDK import here. Requests become google-genai keyword arguments built
from plain dicts (the SDK validates them); responses are read from the SDK's
``GenerateContentResponse`` or from the vendor's JSON, which look the same once the
object is dumped by alias.

Gemini facts this module encodes:

* usage: ``promptTokenCount`` includes ``cachedContentTokenCount``;
  ``candidatesTokenCount`` excludes ``thoughtsTokenCount``; ``toolUsePromptTokenCount``
  is input the model read from tool executions. So input = prompt - cached + tool
  use, output = candidates + thoughts, reasoning = thoughts.
* streams repeat CUMULATIVE ``usageMetadata`` on every chunk: the last one is the call's.
* function calls usually carry no id: we synthesize a stable one per response. A
  ``thoughtSignature`` on the call rides inside the id (after ``__thought__``) so it
  goes back to Gemini when the tool result is sent, as Gemini 3 requires.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import mimetypes
import re
import time
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ... import errors
from ...parts import gemini_part
from ...types import (
    AudioPart,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FilePart,
    FinishReason,
    FunctionCall,
    ImagePart,
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

VENDOR = "google"
SIG_SEP = "__thought__"
_SYNTH_ID = re.compile(r"^call_[0-9a-f]{24}$")

_FINISH: dict[str, FinishReason] = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "LANGUAGE": "content_filter",
    "MALFORMED_FUNCTION_CALL": "error",
    "UNEXPECTED_TOOL_CALL": "error",
    "TOO_MANY_TOOL_CALLS": "error",
    "MISSING_THOUGHT_SIGNATURE": "error",
    "MALFORMED_RESPONSE": "error",
    "OTHER": "stop",
}


_TOOL_CHOICE = {"auto": "AUTO", "none": "NONE", "required": "ANY"}


# ── request ──────────────────────────────────────────────────────────────────

def to_request(request: ChatRequest, model: str, settings: ProviderSettings) -> dict[str, Any]:
    """google-genai ``generate_content`` kwargs: ``model``, ``contents`` and ``config``."""
    system, contents = _contents(request, settings)
    config: dict[str, Any] = {
        # one attempt per call: the Client retries; no SDK-side continuation hops
        "automatic_continuation": False,
        "automatic_function_calling": {"disable": True},
    }
    if system:
        config["system_instruction"] = {"parts": system}
    config.update(_generation_params(request, settings))
    config.update(_tools(request, settings))
    config.update(_response_format(request, settings))
    for key, value in request.extra.items():
        if key == "config" and isinstance(value, dict):
            config.update(value)
        else:
            config[key] = value
    return {"model": model, "contents": contents, "config": config}


def _unsupported(request: ChatRequest, param: str, hint: str = "") -> None:
    request.unsupported(VENDOR, param, hint)  # raises unless drop_params


def _generation_params(request: ChatRequest, settings: ProviderSettings) -> dict[str, Any]:
    caps = settings.capabilities
    out: dict[str, Any] = {}
    simple = {"temperature": "temperature", "top_k": "top_k", "max_tokens": "max_output_tokens",
              "presence_penalty": "presence_penalty", "frequency_penalty": "frequency_penalty"}
    for ours, theirs in simple.items():
        if getattr(request, ours) is not None:
            out[theirs] = getattr(request, ours)
    gated = {"top_p": ("top_p", caps.top_p), "stop": ("stop_sequences", caps.stop),
             "seed": ("seed", caps.seed)}
    for ours, (theirs, supported) in gated.items():
        value = getattr(request, ours)
        if value is None:
            continue
        if supported:
            out[theirs] = value
        else:
            _unsupported(request, ours)
    if request.reasoning_effort is not None:
        out["thinking_config"] = {"thinking_level": request.reasoning_effort.upper()}
    if request.user is not None:
        _unsupported(request, "user", "Gemini has no end-user id field")
    return out


def _tools(request: ChatRequest, settings: ProviderSettings) -> dict[str, Any]:
    caps = settings.capabilities
    out: dict[str, Any] = {}
    if request.parallel_tool_calls is False:
        _unsupported(request, "parallel_tool_calls", "Gemini cannot forbid parallel function calls")
    if request.tools:
        if not caps.tools:
            _unsupported(request, "tools")
            return out
        decls = [_declaration(t.function) for t in request.tools]
        out["tools"] = [{"function_declarations": decls}]
    if request.tool_choice is not None and (request.tools or request.tool_choice == "none"):
        if not caps.tool_choice:
            _unsupported(request, "tool_choice")
        elif request.tools:
            out["tool_config"] = {"function_calling_config": _tool_choice(request.tool_choice)}
    return out


def _declaration(fn: Any) -> dict[str, Any]:
    decl: dict[str, Any] = {"name": fn.name, "parameters_json_schema": fn.parameters}
    if fn.description:
        decl["description"] = fn.description
    return decl


def _tool_choice(choice: Any) -> dict[str, Any]:
    if isinstance(choice, dict):
        return {"mode": "ANY", "allowed_function_names": [choice["function"]["name"]]}
    return {"mode": _TOOL_CHOICE[choice]}


def _response_format(request: ChatRequest, settings: ProviderSettings) -> dict[str, Any]:
    fmt = request.response_format
    caps = settings.capabilities
    if fmt is None or fmt.type == "text":
        return {}
    if fmt.type == "json_object":
        if not caps.json_object:
            _unsupported(request, "response_format")
            return {}
        return {"response_mime_type": "application/json"}
    if not caps.json_schema:
        _unsupported(request, "response_format", "json_schema")
        return {}
    assert fmt.json_schema is not None  # guaranteed by ResponseFormat's validator
    return {"response_mime_type": "application/json", "response_json_schema": fmt.json_schema.schema_}


def _contents(request: ChatRequest, settings: ProviderSettings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System parts and the conversation as Gemini contents (tool results merged per turn)."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names = _tool_call_names(request.messages)
    for msg in request.messages:
        if msg.role in ("system", "developer"):
            system.append({"text": msg.text()})
            continue
        role, parts = _message(msg, names, request, settings)
        if role == "user" and msg.role == "tool" and contents and _is_tool_turn(contents[-1]):
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    if not contents:
        raise errors.InvalidRequestError("Gemini needs at least one non-system message",
                                         param="messages")
    return system, contents


def _is_tool_turn(content: dict[str, Any]) -> bool:
    return content["role"] == "user" and all("function_response" in p for p in content["parts"])


def _tool_call_names(messages: list[Message]) -> dict[str, str]:
    return {tc.id: tc.function.name for m in messages for tc in (m.tool_calls or [])}


def _message(msg: Message, names: dict[str, str], request: ChatRequest,
             settings: ProviderSettings) -> tuple[str, list[dict[str, Any]]]:
    if msg.role == "tool":
        return "user", [_function_response(msg, names)]
    if msg.role == "assistant":
        parts = _content_parts(msg, request, settings)
        parts.extend(_function_call_part(tc) for tc in msg.tool_calls or [])
        return "model", parts
    return "user", _content_parts(msg, request, settings)


def _content_parts(msg: Message, request: ChatRequest, settings: ProviderSettings) -> list[dict[str, Any]]:
    if isinstance(msg.content, str):
        return [{"text": msg.content}] if msg.content else []
    parts: list[dict[str, Any]] = []
    for part in msg.content or []:
        if isinstance(part, ImagePart):
            if settings.capabilities.images:
                parts.append(_image(part.image_url.url))
            else:
                _unsupported(request, "images")
        elif isinstance(part, (FilePart, AudioPart)):
            parts.append(gemini_part(part, settings.name))
        else:  # text; cache_control dropped: Gemini caches implicitly
            parts.append({"text": part.text})
    return parts


def _image(url: str) -> dict[str, Any]:
    if url.startswith("data:"):
        header, _, data = url.partition(",")
        mime = header[5:].split(";")[0] or "image/png"
        if ";base64" not in header:
            raise errors.InvalidRequestError("image data URLs must be base64-encoded",
                                             param="messages")
        try:
            raw = base64.b64decode(data, validate=True)
        except (binascii.Error, ValueError):
            raise errors.InvalidRequestError("image data URL is not valid base64",
                                             param="messages") from None
        return {"inline_data": {"mime_type": mime, "data": raw}}
    mime = mimetypes.guess_type(url.split("?")[0])[0] or "image/jpeg"
    return {"file_data": {"file_uri": url, "mime_type": mime}}


def _function_call_part(tc: ToolCall) -> dict[str, Any]:
    try:
        args = tc.function.parsed_arguments()
    except ValueError:
        raise errors.InvalidRequestError(
            f"tool call {tc.id!r} has arguments that are not JSON: {tc.function.arguments!r}",
            param="messages") from None
    call: dict[str, Any] = {"name": tc.function.name, "args": args if isinstance(args, dict) else {}}
    call_id, signature = split_tool_call_id(tc.id)
    if not _SYNTH_ID.match(call_id):
        call["id"] = call_id
    part: dict[str, Any] = {"function_call": call}
    if signature:
        part["thought_signature"] = _b64decode(signature)
    return part


def _b64decode(text: str) -> bytes:
    """Standard or URL-safe base64, padding optional (pydantic dumps bytes URL-safe)."""
    text = text.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _function_response(msg: Message, names: dict[str, str]) -> dict[str, Any]:
    call_id, _ = split_tool_call_id(msg.tool_call_id or "")
    name = names.get(msg.tool_call_id or "") or msg.name
    if not name:
        raise errors.InvalidRequestError(
            f"tool result {msg.tool_call_id!r} answers no assistant tool call in the conversation; "
            "Gemini needs the function's name", param="messages")
    text = msg.text()
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    resp: dict[str, Any] = {"name": name,
                            "response": value if isinstance(value, dict) else {"result": value}}
    if not _SYNTH_ID.match(call_id):
        resp["id"] = call_id
    return {"function_response": resp}


def split_tool_call_id(tool_call_id: str) -> tuple[str, str | None]:
    """``(id, thought_signature or None)`` from an id made by `tool_call_id`."""
    call_id, sep, signature = tool_call_id.partition(SIG_SEP)
    return call_id, (signature if sep else None)


def tool_call_id(call: dict[str, Any], signature: str | None, response_id: str, index: int) -> str:
    """The vendor's id when given, else a stable one; a thought signature rides along."""
    base = call.get("id")
    if not base:
        seed = json.dumps([response_id, index, call.get("name"), call.get("args")],
                          sort_keys=True, default=str)
        base = "call_" + hashlib.sha256(seed.encode()).hexdigest()[:24]
    return f"{base}{SIG_SEP}{signature}" if signature else base


# ── response ─────────────────────────────────────────────────────────────────

def as_json(raw: Any) -> dict[str, Any]:
    """The vendor's JSON shape (camelCase) from an SDK object or an already-plain dict."""
    if isinstance(raw, dict):
        return raw
    dump = getattr(raw, "model_dump", None)
    if dump is None:
        raise errors.ResponseError(f"cannot read a Gemini response of type {type(raw).__name__}",
                                   provider=VENDOR)
    dumped: dict[str, Any] = dump(mode="json", by_alias=True, exclude_none=True)
    return dumped


def _pick(d: dict[str, Any], camel: str) -> Any:
    """``d[camel]``, also accepting the snake_case spelling."""
    if camel in d:
        return d[camel]
    return d.get(re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower())


def usage_from(raw_usage: Any) -> Usage | None:
    """Gemini ``usageMetadata`` -> our buckets; None when the vendor reported none."""
    if raw_usage is None:
        return None
    u = as_json(raw_usage)
    keys = ("promptTokenCount", "candidatesTokenCount", "thoughtsTokenCount",
            "cachedContentTokenCount", "toolUsePromptTokenCount", "totalTokenCount")
    if all(_pick(u, k) is None for k in keys):
        return None
    return vendor_usage(prompt=_pick(u, "promptTokenCount") or 0,
                        cache_read=_pick(u, "cachedContentTokenCount"),
                        input=_pick(u, "toolUsePromptTokenCount"),
                        output=_pick(u, "candidatesTokenCount"), reasoning=_pick(u, "thoughtsTokenCount"),
                        reasoning_in_output=False)


def finish_reason(raw: str | None, has_tool_calls: bool) -> FinishReason | None:
    """Gemini's finishReason as OpenAI's; a STOP with function calls is ``tool_calls``."""
    if raw is None:
        return None
    mapped = _FINISH.get(str(raw).upper(), "stop")
    return "tool_calls" if has_tool_calls and mapped == "stop" else mapped


def _parts(candidate: dict[str, Any]) -> list[dict[str, Any]]:
    return (candidate.get("content") or {}).get("parts") or []


def _tool_calls(parts: list[dict[str, Any]], response_id: str, start: int) -> list[ToolCall]:
    calls: list[ToolCall] = []
    for part in parts:
        call = _pick(part, "functionCall")
        if call is None:
            continue
        index = start + len(calls)
        calls.append(ToolCall(
            id=tool_call_id(call, _pick(part, "thoughtSignature"), response_id, index),
            function=FunctionCall(name=call.get("name") or "",
                                  arguments=json.dumps(call.get("args") or {}))))
    return calls


def _text(parts: list[dict[str, Any]]) -> str:
    return "".join(p["text"] for p in parts if isinstance(p.get("text"), str) and not p.get("thought"))


def detect(raw: Mapping[str, Any]) -> bool:
    """True when the JSON mapping ``raw`` looks like a generateContent response (for ``unillm.track``)."""
    return "candidates" in raw or "usageMetadata" in raw or "usage_metadata" in raw


def from_response(raw: Any, provider: str, *, model: str = "", created: int | None = None) -> ChatResponse:
    """A Gemini generateContent response (SDK object or JSON dict) as a ChatResponse.

    ``cost`` stays None (the Client prices the call); ``usage`` is None when the
    vendor reported none.
    """
    body = as_json(raw)
    response_id = _pick(body, "responseId") or f"gemini-{uuid.uuid4().hex}"
    candidates = body.get("candidates") or []
    choices = [_choice(c, i, response_id) for i, c in enumerate(candidates)]
    if not choices:  # the prompt itself was blocked (promptFeedback.blockReason)
        choices = [Choice(message=ResponseMessage(content=None), finish_reason="content_filter")]
    return ChatResponse(
        id=response_id,
        created=created if created is not None else int(time.time()),
        model=_pick(body, "modelVersion") or model,
        choices=choices,
        usage=usage_from(_pick(body, "usageMetadata")),
        provider=provider,
    )


def _choice(candidate: dict[str, Any], position: int, response_id: str) -> Choice:
    parts = _parts(candidate)
    calls = _tool_calls(parts, response_id, 0)
    text = _text(parts)
    return Choice(
        index=candidate.get("index", position) or 0,
        message=ResponseMessage(content=text or None, tool_calls=calls or None),
        finish_reason=finish_reason(_pick(candidate, "finishReason"), bool(calls)),
    )


# ── streaming ────────────────────────────────────────────────────────────────

class StreamState:
    """Turns Gemini stream chunks into OpenAI-shaped `StreamChunk`s.

    `feed` returns the deltas of one vendor chunk; `finish` returns the closing
    chunk with the finish reason and the usage. Gemini repeats cumulative
    usage on every chunk, so the latest one is kept, never summed.
    """

    def __init__(self, provider: str, model: str = "", created: int | None = None) -> None:
        self.provider = provider
        self.model = model
        self.created = created if created is not None else int(time.time())
        self.id = ""
        self.usage: Usage | None = None
        self.raw_finish: str | None = None
        self.tool_calls = 0
        self._role_sent = False

    @property
    def complete(self) -> bool:
        """True once Gemini sent a finishReason (or blocked the prompt): a stream that
        merely stops, even cleanly, was not finished."""
        return self.raw_finish is not None

    def reported(self) -> tuple[Usage | None, frozenset[str]]:
        """The latest cumulative ``usageMetadata``: every bucket, thoughts included, is the
        vendor's figure for what it had produced by then."""
        return whole_usage(self.usage)

    def feed(self, event: Any) -> list[StreamChunk]:
        body = as_json(event)
        self.id = self.id or _pick(body, "responseId") or f"gemini-{uuid.uuid4().hex}"
        self.model = _pick(body, "modelVersion") or self.model
        usage = usage_from(_pick(body, "usageMetadata"))
        if usage is not None:
            self.usage = usage  # cumulative: the latest replaces the earlier
        candidates = body.get("candidates") or []
        if not candidates:
            if _pick(body, "promptFeedback"):
                self.raw_finish = self.raw_finish or "SAFETY"
            return []
        candidate = candidates[0]
        self.raw_finish = _pick(candidate, "finishReason") or self.raw_finish
        parts = _parts(candidate)
        delta = Delta(content=_text(parts) or None)
        calls = _tool_calls(parts, self.id, self.tool_calls)
        if calls:
            delta.tool_calls = [
                ToolCallDelta(index=self.tool_calls + i, id=c.id, type="function",
                              function={"name": c.function.name, "arguments": c.function.arguments})
                for i, c in enumerate(calls)]
            self.tool_calls += len(calls)
        if delta.content is None and not delta.tool_calls:
            return []
        return [self._chunk(delta)]

    def finish(self) -> StreamChunk:
        """The last chunk: finish reason and the vendor's final usage (None if it sent none).
        Only for a `complete` stream."""
        reason = finish_reason(self.raw_finish, self.tool_calls > 0) or "stop"
        chunk = self._chunk(Delta(), reason)
        chunk.usage = self.usage
        return chunk

    def _chunk(self, delta: Delta, reason: FinishReason | None = None) -> StreamChunk:
        if not self._role_sent:
            delta.role = "assistant"
            self._role_sent = True
        return StreamChunk(id=self.id, created=self.created, model=self.model, provider=self.provider,
                           choices=[ChunkChoice(delta=delta, finish_reason=reason)])
