"""``POST /v1/responses``: the part of OpenAI's Responses API that is a chat call.

Text and image (and file) input, ``instructions``, function tools and their calls and
outputs, ``text.format`` (structured output), ``reasoning.effort``, ``max_output_tokens``,
sampling, ``metadata`` (extra tags, as `tenancy.TagPolicy` allows) and streaming map onto
`Client.achat`; nothing is stored (``store`` is accepted and ignored, there is no
``previous_response_id``). Any other field, or a built-in tool, is a 400 naming it.
The answer is a ``response`` object; cost rides in the ``x-unillm-*`` headers and, on
every response object (streamed: ``response.completed``), in its ``unillm`` object.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .chat import _extra, _tags, read_json
from .routes import Call, api_key, summary
from .wire import HTTPError, dumps, json_response, unillm_headers

_PASSED = {"temperature": "temperature", "top_p": "top_p", "max_output_tokens": "max_tokens",
           "parallel_tool_calls": "parallel_tool_calls", "user": "user"}
_IGNORED = frozenset({"store", "service_tier", "prompt_cache_key", "safety_identifier",
                      "stream_options", "prompt_cache_retention"})
#: fields unillm cannot honour, with the value that means "not used"
_UNSUPPORTED: dict[str, Any] = {"previous_response_id": None, "conversation": None, "background": False,
                                "include": None, "prompt": None, "max_tool_calls": None,
                                "top_logprobs": None, "truncation": "disabled"}
_ROLES = frozenset({"user", "assistant", "system", "developer"})


def _bad(name: str, what: str = "is not supported by this gateway's /v1/responses") -> HTTPError:
    return HTTPError(400, f"{name!r} {what}", code="unsupported_parameter", param=name)


# ── request ──────────────────────────────────────────────────────────────────

def to_call(body: Any, *, allow_extra: Any = ()
            ) -> tuple[str, list[dict[str, Any]], dict[str, Any], bool, dict[str, str]]:
    """(model, messages, Client.achat params, stream, caller tags) from a Responses body."""
    if not isinstance(body, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    body = dict(body)
    model = body.pop("model", None)
    if not isinstance(model, str) or not model:
        raise HTTPError(400, "you must provide a model parameter", param="model")
    stream = body.pop("stream", False)
    if not isinstance(stream, bool) and stream is not None:
        raise HTTPError(400, "'stream' must be a boolean", param="stream")
    messages: list[dict[str, Any]] = []
    instructions = body.pop("instructions", None)
    if instructions:
        messages.append({"role": "system", "content": str(instructions)})
    messages += _input(body.pop("input", None))
    tags = _tags(body.pop("metadata", None))
    params: dict[str, Any] = {}
    tools = body.pop("tools", None)
    if tools:
        params["tools"] = [_tool(t, f"tools.{i}") for i, t in enumerate(tools)]
    choice = body.pop("tool_choice", None)
    if choice is not None:
        params["tool_choice"] = _tool_choice(choice)
    text = body.pop("text", None)
    if text is not None:
        fmt = _format(text)
        if fmt is not None:
            params["response_format"] = fmt
    reasoning = body.pop("reasoning", None)
    if isinstance(reasoning, dict) and reasoning.get("effort"):
        params["reasoning_effort"] = reasoning["effort"]
    extra = body.pop("extra", None)
    if extra is not None:
        params["extra"] = _extra(extra, allow_extra)
    for name, value in body.items():
        if name in _PASSED:
            if value is not None:
                params[_PASSED[name]] = value
        elif name in _UNSUPPORTED:
            if value not in (None, False, _UNSUPPORTED[name], [], {}):
                raise _bad(name)
        elif name not in _IGNORED:
            raise HTTPError(400, f"unrecognized request argument supplied: {name}",
                            code="unknown_parameter", param=name)
    return model, messages, params, bool(stream), tags


def _input(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise HTTPError(400, "'input' must be a string or a non-empty list of items", param="input")
    out: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"input.{i}"
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind == "message" and item.get("role") in _ROLES:
            out.append({"role": item["role"], "content": _content(item.get("content"), where)})
        elif kind == "function_call":
            call = {"id": item.get("call_id"), "type": "function",
                    "function": {"name": item.get("name"), "arguments": item.get("arguments") or "{}"}}
            if out and out[-1]["role"] == "assistant" and "tool_calls" in out[-1]:
                out[-1]["tool_calls"].append(call)
            else:
                out.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output")
            out.append({"role": "tool", "tool_call_id": item.get("call_id"),
                        "content": output if isinstance(output, str) else dumps(output)})
        else:
            raise _bad(f"{where}.type", f"item type {kind!r} is not supported by this gateway")
    return out


def _content(content: Any, where: str) -> Any:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise HTTPError(400, f"'{where}.content' must be a string or a list of parts", param=f"{where}.content")
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("input_text", "output_text"):
            parts.append({"type": "text", "text": part.get("text", "")})
        elif kind == "input_image" and part.get("image_url"):
            image: dict[str, Any] = {"url": part["image_url"]}
            if part.get("detail"):
                image["detail"] = part["detail"]
            parts.append({"type": "image_url", "image_url": image})
        elif kind == "input_file" and (part.get("file_data") or part.get("file_id")):
            file = {k: part[k] for k in ("file_data", "file_id", "filename") if part.get(k)}
            parts.append({"type": "file", "file": file})
        else:
            raise _bad(f"{where}.content.{j}", f"part type {kind!r} is not supported by this gateway")
    return parts


def _tool(tool: Any, where: str) -> dict[str, Any]:
    if not isinstance(tool, dict) or tool.get("type") != "function" or "name" not in tool:
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise _bad(where, f"(a {kind!r} tool) is not supported: only function tools")
    fn = {k: tool[k] for k in ("name", "description", "parameters", "strict") if tool.get(k) is not None}
    return {"type": "function", "function": fn}


def _tool_choice(choice: Any) -> Any:
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise _bad("tool_choice", "must be auto, none, required or {'type': 'function', 'name': ...}")


def _format(text: Any) -> dict[str, Any] | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    if fmt is None:
        return None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind in ("text", "json_object"):
        return {"type": kind}
    if kind == "json_schema":
        schema = {k: fmt[k] for k in ("name", "schema", "strict", "description") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise _bad("text.format", f"type {kind!r} is not text, json_object or json_schema")


# ── response ─────────────────────────────────────────────────────────────────

def usage_body(usage: Any) -> dict[str, Any] | None:
    if usage is None:
        return None
    return {"input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": usage.cache_read_tokens},
            "output_tokens": usage.output_tokens,
            "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
            "total_tokens": usage.total_tokens}


def _message_item(rid: str, text: str, status: str = "completed") -> dict[str, Any]:
    part = {"type": "output_text", "text": text, "annotations": []}
    return {"type": "message", "id": f"msg_{rid}", "status": status, "role": "assistant",
            "content": [part] if status == "completed" else []}


def _call_item(rid: str, n: int, call_id: str, name: str, arguments: str,
               status: str = "completed") -> dict[str, Any]:
    return {"type": "function_call", "id": f"fc_{rid}_{n}", "call_id": call_id, "name": name,
            "arguments": arguments, "status": status}


def _rid(resp_id: str) -> str:
    return resp_id.removeprefix("resp_") or "unillm"


def response_body(resp: Any, *, status: str | None = None, output: list[dict[str, Any]] | None = None
                  ) -> dict[str, Any]:
    """A `ChatResponse` (or, with ``output``, a stream's items) as a ``response`` object."""
    rid = _rid(resp.id)
    choice = resp.choices[0] if resp.choices else None
    if output is None:
        output = []
        if choice is not None and choice.message.content:
            output.append(_message_item(rid, choice.message.content))
        for n, tc in enumerate((choice.message.tool_calls if choice else None) or []):
            output.append(_call_item(rid, n, tc.id, tc.function.name, tc.function.arguments))
    cut = choice is not None and choice.finish_reason == "length"
    body: dict[str, Any] = {
        "id": f"resp_{rid}", "object": "response", "created_at": resp.created,
        "status": status or ("incomplete" if cut else "completed"),
        "incomplete_details": {"reason": "max_output_tokens"} if cut else None,
        "error": None, "model": resp.model, "output": output, "parallel_tool_calls": True,
        "tool_choice": "auto", "tools": [], "metadata": {}, "instructions": None,
        "text": {"format": {"type": "text"}}, "usage": usage_body(getattr(resp, "usage", None)),
    }
    if hasattr(resp, "ledger_id"):
        body["unillm"] = summary(resp)
    return body


class _Start:
    """What ``response.created`` needs before the call ends: an id, a time, a model."""

    def __init__(self, chunk: Any) -> None:
        self.id, self.created, self.model = chunk.id, chunk.created, chunk.model
        self.choices: list[Any] = []


class StreamFrames:
    """unillm chunks -> Responses stream events, ``response.completed`` last (with cost)."""

    def __init__(self) -> None:
        self.seq = 0
        self.rid = ""
        self.output: list[dict[str, Any]] = []
        self.text: str | None = None        # the open message item's text
        self.calls: dict[int, int] = {}     # tool call index -> output index
        self.started = False

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return f"event: {kind}\ndata: {dumps(payload)}\n\n".encode()

    def chunk(self, chunk: Any) -> list[bytes]:
        out: list[bytes] = []
        if not self.started:
            self.started = True
            self.rid = _rid(chunk.id)
            start = response_body(_Start(chunk), status="in_progress", output=[])
            out += [self._event("response.created", response=start),
                    self._event("response.in_progress", response=start)]
        for c in chunk.choices:
            if c.delta.content:
                if self.text is None:
                    out += self._close_calls()
                    out += self._open_message()
                self.text = (self.text or "") + c.delta.content
                out.append(self._event("response.output_text.delta", item_id=f"msg_{self.rid}",
                                       output_index=len(self.output) - 1, content_index=0,
                                       delta=c.delta.content, logprobs=[]))
            for tc in c.delta.tool_calls or []:
                out += self._tool_delta(tc)
        return out

    def _open_message(self) -> list[bytes]:
        self.text = ""
        self.output.append(_message_item(self.rid, "", "in_progress"))
        i = len(self.output) - 1
        return [self._event("response.output_item.added", output_index=i, item=self.output[i]),
                self._event("response.content_part.added", item_id=f"msg_{self.rid}", output_index=i,
                            content_index=0, part={"type": "output_text", "text": "", "annotations": []})]

    def _close_message(self) -> list[bytes]:
        if self.text is None:
            return []
        i, text, self.text = next(n for n, it in enumerate(self.output) if it["type"] == "message"), self.text, None
        self.output[i] = item = _message_item(self.rid, text)
        part = item["content"][0]
        return [self._event("response.output_text.done", item_id=item["id"], output_index=i,
                            content_index=0, text=text, logprobs=[]),
                self._event("response.content_part.done", item_id=item["id"], output_index=i,
                            content_index=0, part=part),
                self._event("response.output_item.done", output_index=i, item=item)]

    def _tool_delta(self, tc: Any) -> list[bytes]:
        out: list[bytes] = []
        fn = tc.function or {}
        if tc.index not in self.calls:
            out += self._close_message()
            self.calls[tc.index] = len(self.output)
            self.output.append(_call_item(self.rid, tc.index, tc.id or f"call_{tc.index}",
                                          fn.get("name", ""), "", "in_progress"))
            out.append(self._event("response.output_item.added", output_index=len(self.output) - 1,
                                   item=self.output[-1]))
        i = self.calls[tc.index]
        if fn.get("arguments"):
            self.output[i]["arguments"] += fn["arguments"]
            out.append(self._event("response.function_call_arguments.delta", item_id=self.output[i]["id"],
                                   output_index=i, delta=fn["arguments"]))
        return out

    def _close_calls(self) -> list[bytes]:
        out: list[bytes] = []
        for i in sorted(self.calls.values()):
            item = self.output[i]
            if item["status"] != "completed":
                item["status"] = "completed"
                out += [self._event("response.function_call_arguments.done", item_id=item["id"],
                                    output_index=i, arguments=item["arguments"]),
                        self._event("response.output_item.done", output_index=i, item=item)]
        return out

    def end(self, resp: Any) -> list[bytes]:
        out = self._close_message() + self._close_calls()
        body = response_body(resp, output=self.output)
        kind = "response.incomplete" if body["status"] == "incomplete" else "response.completed"
        return [*out, self._event(kind, response=body)]

    def error(self, err: HTTPError) -> list[bytes]:
        return [self._event("error", code=err.code, message=err.message, param=err.param)]


# ── the route ────────────────────────────────────────────────────────────────

async def create(request: Request) -> Response:
    gw = request.app.state.gateway
    key = gw.verify(api_key(request))
    model, messages, params, stream, caller = to_call(await read_json(request),
                                                      allow_extra=gw.server.allow_extra)
    call = Call(gw, key, model, caller)
    await call.admit()
    if stream:
        return await call.stream(messages, params, StreamFrames())
    resp = await call.complete(messages, params)
    return json_response(response_body(resp), headers=unillm_headers(resp))


__all__ = ["StreamFrames", "create", "response_body", "to_call"]
