"""``POST /v1/messages``: Anthropic's Messages API, in and out, over `Client.achat`.

The ``anthropic`` SDK (``x-api-key`` or ``Authorization: Bearer``) reaches any model the
gateway serves. The body becomes unillm's OpenAI-shaped messages with nothing lost that
Anthropic needs: ``cache_control`` on system blocks, text, image and document blocks and
tools travels as `types.CacheControl` and reaches an Anthropic upstream as sent (other
vendors cache implicitly); ``document`` blocks become file parts; ``tool_use`` and
``tool_result`` become tool calls and tool messages. Anything else (``thinking``, server
tools, MCP) is a 400 naming it. Errors leave in Anthropic's shape so the SDK raises its own
classes; cost rides in the ``x-unillm-*`` headers and, streamed, in the final
``message_delta`` event's ``unillm`` object.
"""

from __future__ import annotations

import base64
import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .chat import read_json
from .routes import Call, api_key, summary
from .wire import HTTPError, dumps, json_response, unillm_headers

log = logging.getLogger("unillm.server")

_PASSED = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
           "stop_sequences": "stop"}
_IGNORED = frozenset({"service_tier"})
_UNSUPPORTED = frozenset({"thinking", "container", "mcp_servers", "context_management",
                          "output_config", "output_format", "inference_geo"})
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
         "content_filter": "refusal", "error": "end_turn"}
_ERROR_TYPE = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error"}


def _bad(message: str, param: str) -> HTTPError:
    return HTTPError(400, message, param=param, code="unsupported_parameter")


# ── request ──────────────────────────────────────────────────────────────────

def to_call(body: Any) -> tuple[str, list[dict[str, Any]], dict[str, Any], bool]:
    """(model, OpenAI-shaped messages, Client.achat params, stream) from a Messages body."""
    if not isinstance(body, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    body = dict(body)
    model = body.pop("model", None)
    if not isinstance(model, str) or not model:
        raise HTTPError(400, "model: Field required", param="model")
    max_tokens = body.pop("max_tokens", None)
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise HTTPError(400, "max_tokens: a positive integer is required", param="max_tokens")
    raw = body.pop("messages", None)
    if not isinstance(raw, list) or not raw:
        raise HTTPError(400, "messages: a non-empty list of messages is required", param="messages")
    stream = body.pop("stream", False)
    if not isinstance(stream, bool):
        raise HTTPError(400, "stream: must be a boolean", param="stream")
    messages = _system(body.pop("system", None))
    for i, m in enumerate(raw):
        messages.extend(_message(m, f"messages.{i}"))
    params: dict[str, Any] = {"max_tokens": max_tokens}
    tools = body.pop("tools", None)
    if tools:
        params["tools"] = [_tool(t, f"tools.{i}") for i, t in enumerate(tools)]
    choice = body.pop("tool_choice", None)
    if choice is not None:
        params.update(_tool_choice(choice))
    metadata = body.pop("metadata", None)
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        params["user"] = metadata["user_id"]
    for name, value in body.items():
        if name in _PASSED:
            if value is not None:
                params[_PASSED[name]] = value
        elif name in _UNSUPPORTED:
            raise _bad(f"{name}: not supported by this gateway's /v1/messages", name)
        elif name not in _IGNORED:
            raise HTTPError(400, f"{name}: Extra inputs are not permitted", param=name,
                            code="unknown_parameter")
    return model, messages, params, stream


def _system(system: Any) -> list[dict[str, Any]]:
    if system is None or system == "" or system == []:
        return []
    if isinstance(system, str):
        return [{"role": "system", "content": system}]
    if not isinstance(system, list):
        raise HTTPError(400, "system: a string or a list of text blocks", param="system")
    return [{"role": "system", "content": [_text(b, f"system.{i}") for i, b in enumerate(system)]}]


def _text(block: Any, where: str) -> dict[str, Any]:
    if not isinstance(block, dict) or block.get("type") != "text" or not isinstance(block.get("text"), str):
        raise HTTPError(400, f"{where}: expected a text block", param=where)
    extra = set(block) - {"type", "text", "cache_control", "citations"}
    if extra:
        raise _bad(f"{where}.{min(extra)}: not supported by this gateway", f"{where}.{min(extra)}")
    return _marked({"type": "text", "text": block["text"]}, block)


def _marked(part: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    if block.get("cache_control") is not None:
        part["cache_control"] = block["cache_control"]
    return part


def _message(m: Any, where: str) -> list[dict[str, Any]]:
    if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
        raise HTTPError(400, f"{where}.role: must be 'user' or 'assistant'", param=f"{where}.role")
    role, content = m["role"], m.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise HTTPError(400, f"{where}.content: a string or a list of blocks", param=f"{where}.content")
    out: list[dict[str, Any]] = []   # tool results first: they answer the previous turn
    parts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        at = f"{where}.content.{i}"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            parts.append(_text(block, at))
        elif kind in ("image", "document") and role == "user":
            parts.append(_media(block, at))
        elif kind == "tool_use" and role == "assistant":
            calls.append({"id": block.get("id"), "type": "function", "function": {
                "name": block.get("name"), "arguments": json.dumps(block.get("input") or {})}})
        elif kind == "tool_result" and role == "user":
            out.append(_tool_result(block, at))
        else:
            raise _bad(f"{at}: a {kind!r} block is not supported here by this gateway", at)
    if parts or calls:
        msg: dict[str, Any] = {"role": role, "content": parts or None}
        if calls:
            msg["tool_calls"] = calls
        out.append(msg)
    return out


def _media(block: dict[str, Any], where: str) -> dict[str, Any]:
    source: dict[str, Any] = block["source"] if isinstance(block.get("source"), dict) else {}
    kind = source.get("type")
    if block["type"] == "image":
        if kind == "base64":
            url = f"data:{source.get('media_type')};base64,{source.get('data')}"
        elif kind == "url":
            url = str(source.get("url"))
        else:
            raise _bad(f"{where}.source.type: {kind!r} is not supported (base64 or url)", f"{where}.source")
        return _marked({"type": "image_url", "image_url": {"url": url}}, block)
    if kind == "base64":
        data = f"data:{source.get('media_type')};base64,{source.get('data')}"
    elif kind == "text":
        encoded = base64.b64encode(str(source.get("data", "")).encode()).decode()
        data = f"data:text/plain;base64,{encoded}"
    else:
        raise _bad(f"{where}.source.type: {kind!r} is not supported (base64 or text)", f"{where}.source")
    file: dict[str, Any] = {"file_data": data}
    if isinstance(block.get("title"), str):
        file["filename"] = block["title"]
    return _marked({"type": "file", "file": file}, block)


def _tool_result(block: dict[str, Any], where: str) -> dict[str, Any]:
    content = block.get("content")
    if isinstance(content, list):
        parts = [_text(b, f"{where}.content.{i}") for i, b in enumerate(content)]
    else:
        parts = [{"type": "text", "text": str(content or "")}]
    if block.get("is_error"):
        parts.insert(0, {"type": "text", "text": "Error: "})
    if block.get("cache_control") is not None and parts:
        parts[-1]["cache_control"] = block["cache_control"]
    return {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": parts}


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") not in (None, "custom") or "name" not in tool:
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise _bad(f"{where}: server tool {kind!r} is not supported by this gateway "
                   "(only client tools with name and input_schema)", where)
    fn: dict[str, Any] = {"name": tool["name"], "parameters": tool.get("input_schema") or {}}
    if tool.get("description"):
        fn["description"] = tool["description"]
    if tool.get("strict") is not None:
        fn["strict"] = tool["strict"]
    return _marked({"type": "function", "function": fn}, tool)


def _tool_choice(choice: Any) -> dict[str, Any]:
    kind = choice.get("type") if isinstance(choice, dict) else None
    mapped = {"auto": "auto", "any": "required", "none": "none"}.get(kind or "")
    if kind == "tool":
        out: dict[str, Any] = {"tool_choice": {"type": "function", "function": {"name": choice.get("name")}}}
    elif mapped is not None:
        out = {"tool_choice": mapped}
    else:
        raise HTTPError(400, f"tool_choice.type: {kind!r} is not auto, any, tool or none",
                        param="tool_choice")
    if choice.get("disable_parallel_tool_use"):
        out["parallel_tool_calls"] = False
    return out


# ── response ─────────────────────────────────────────────────────────────────

def usage_body(usage: Any) -> dict[str, Any]:
    """Anthropic's usage: ``input_tokens`` uncached, cache writes and reads apart."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    return {"input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": usage.cache_write_tokens,
            "cache_read_input_tokens": usage.cache_read_tokens,
            "cache_creation": {"ephemeral_5m_input_tokens": usage.cache_write_tokens - usage.cache_write_1h_tokens,
                               "ephemeral_1h_input_tokens": usage.cache_write_1h_tokens},
            "output_tokens": usage.output_tokens}


def message_body(resp: Any) -> dict[str, Any]:
    """A `ChatResponse` as an Anthropic ``message``."""
    choice = resp.choices[0] if resp.choices else None
    content: list[dict[str, Any]] = []
    if choice is not None and choice.message.content:
        content.append({"type": "text", "text": choice.message.content})
    for tc in (choice.message.tool_calls if choice is not None else None) or []:
        content.append({"type": "tool_use", "id": tc.id, "name": tc.function.name,
                        "input": _arguments(tc.function.arguments)})
    return {"id": resp.id or f"msg_{resp.ledger_id or ''}", "type": "message", "role": "assistant",
            "model": resp.model, "content": content,
            "stop_reason": _STOP.get((choice.finish_reason if choice else None) or "stop", "end_turn"),
            "stop_sequence": None, "usage": usage_body(resp.usage)}


def _arguments(text: str) -> Any:
    try:
        return json.loads(text or "{}")
    except ValueError:
        return {}


def _event(name: str, payload: dict[str, Any]) -> bytes:
    return f"event: {name}\ndata: {dumps(payload)}\n\n".encode()


def error_body(err: HTTPError) -> dict[str, Any]:
    kind = _ERROR_TYPE.get(err.status, "api_error" if err.status >= 500 else "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": err.message}}


class StreamFrames:
    """unillm chunks -> ``message_start``, content blocks, ``message_delta``, ``message_stop``."""

    def __init__(self) -> None:
        self.started = False
        self.index = -1          # the open content block, -1 when none
        self.kind = ""           # "text" or "tool_use"
        self.tools: dict[int, int] = {}  # tool call position -> block index
        self.finish: str | None = None

    def _open(self, kind: str, block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self.index += 1
        self.kind = kind
        out.append(_event("content_block_start", {"type": "content_block_start", "index": self.index,
                                                  "content_block": block}))
        return out

    def _close(self) -> list[bytes]:
        if not self.kind:
            return []
        self.kind = ""
        return [_event("content_block_stop", {"type": "content_block_stop", "index": self.index})]

    def chunk(self, chunk: Any) -> list[bytes]:
        out: list[bytes] = []
        if not self.started:
            self.started = True
            out.append(_event("message_start", {"type": "message_start", "message": {
                "id": chunk.id, "type": "message", "role": "assistant", "model": chunk.model,
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}))
        for c in chunk.choices:
            if c.delta.content:
                if self.kind != "text":
                    out += self._open("text", {"type": "text", "text": ""})
                out.append(_event("content_block_delta", {"type": "content_block_delta", "index": self.index,
                                                          "delta": {"type": "text_delta", "text": c.delta.content}}))
            for tc in c.delta.tool_calls or []:
                if tc.index not in self.tools:
                    out += self._open("tool_use", {"type": "tool_use", "id": tc.id or f"toolu_{tc.index}",
                                                   "name": (tc.function or {}).get("name", ""), "input": {}})
                    self.tools[tc.index] = self.index
                args = (tc.function or {}).get("arguments")
                if args:
                    out.append(_event("content_block_delta", {
                        "type": "content_block_delta", "index": self.tools[tc.index],
                        "delta": {"type": "input_json_delta", "partial_json": args}}))
            if c.finish_reason:
                self.finish = c.finish_reason
        return out

    def end(self, resp: Any) -> list[bytes]:
        out = self._close()
        out.append(_event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": _STOP.get(self.finish or "stop", "end_turn"), "stop_sequence": None},
            "usage": usage_body(resp.usage), "unillm": summary(resp)}))
        out.append(_event("message_stop", {"type": "message_stop"}))
        return out

    def error(self, err: HTTPError) -> list[bytes]:
        return [_event("error", error_body(err))]


# ── the route ────────────────────────────────────────────────────────────────

async def create(request: Request) -> Response:
    gw = request.app.state.gateway
    try:
        key = gw.verify(api_key(request))
        model, messages, params, stream = to_call(await read_json(request))
        call = Call(gw, key, model, {})
        await call.admit()
        if stream:
            return await call.stream(messages, params, StreamFrames())
        resp = await call.complete(messages, params)
    except Exception as exc:  # noqa: BLE001 - every error leaves in Anthropic's shape
        err = gw.http_error(exc)
        if err.status >= 500:
            log.error("POST /v1/messages -> %s %s", err.status, err.message)
        headers = dict(err.headers)
        if err.retry_after is not None:
            headers["retry-after"] = str(max(1, int(err.retry_after + 0.999)))
        return JSONResponse(error_body(err), err.status, headers)
    return json_response(message_body(resp), headers=unillm_headers(resp))


__all__ = ["StreamFrames", "create", "message_body", "to_call", "usage_body"]
