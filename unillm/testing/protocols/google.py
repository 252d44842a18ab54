"""FakeProvider: the google wire protocol (Gemini Developer API generateContent).

Serves ``POST /{version}/models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse`` as google-genai calls them with
``base_url=FakeProvider.url`` (the SDK adds the API version, ``v1`` or ``v1beta``).

Rendering follows the recorded payloads in shared/refs (``gemini_*``): function calls
are ``functionCall`` parts without ids, a call that used tools still finishes
``STOP``, ``promptTokenCount`` includes ``cachedContentTokenCount``,
``candidatesTokenCount`` excludes ``thoughtsTokenCount``, and every stream chunk
repeats the cumulative ``usageMetadata``. Errors use Google's
``{"error": {"code", "message", "status"}}`` body.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from ..replies import Ctx, Reply
from .base import Protocol

_PATH = re.compile(r"^/(v1\w*)/((?:models|tunedModels)/[^/:]+):(generateContent|streamGenerateContent)$")

_FINISH = {"stop": "STOP", "tool_calls": "STOP", "length": "MAX_TOKENS",
           "content_filter": "SAFETY", "error": "OTHER"}

_STATUS = {400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
           401: ("UNAUTHENTICATED", "API key not valid. Please pass a valid API key."),
           403: ("PERMISSION_DENIED", "Permission denied on resource project."),
           404: ("NOT_FOUND", "models/{model} is not found for API version v1beta."),
           409: ("ABORTED", "The request was aborted."),
           429: ("RESOURCE_EXHAUSTED", ("You exceeded your current quota, please check your plan "
                                        "and billing details.")),
           500: ("INTERNAL", "An internal error has occurred."),
           503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
           504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete.")}


class GoogleProtocol(Protocol):
    name = "google"
    route = _PATH
    stream_suffix = ":streamGenerateContent"

    def model(self, path: str, body: Any) -> str:
        resource = self.route_group(path, 2)   # models/{model} or tunedModels/{model}
        return resource.split("/", 1)[1] if resource else ""

    # ── success ──
    def render(self, reply: Reply, ctx: Ctx) -> Any:
        parts = ([{"text": reply.text}] if reply.text else []) + _call_parts(reply)
        body = _envelope(reply, ctx, parts, _FINISH.get(reply.neutral_finish(), "STOP"))
        usage = ctx.usage(reply)
        if usage is not None:
            body["usageMetadata"] = _usage_metadata(usage)
        return body

    def render_stream(self, reply: Reply, ctx: Ctx) -> Iterable[Any]:
        """One chunk per text piece; function calls (whole) and finishReason on the last."""
        pieces: list[list[dict[str, Any]]] = [[{"text": t}] for t in reply.text_pieces()]
        calls = _call_parts(reply)
        if calls or not pieces:
            pieces.append(calls or [{"text": ""}])
        usage = ctx.usage(reply)
        for i, parts in enumerate(pieces):
            last = i == len(pieces) - 1
            finish = _FINISH.get(reply.neutral_finish(), "STOP") if last else None
            event = _envelope(reply, ctx, parts, finish)
            if usage is not None:
                event["usageMetadata"] = _usage_metadata(usage, (i + 1) / len(pieces))
            yield event

    # ── failure ──
    def render_error(self, reply: Reply, ctx: Ctx) -> Any:
        status, default = _STATUS.get(reply.status, ("UNKNOWN", "Unknown error."))
        message = reply.error if isinstance(reply.error, str) else default.format(model=ctx.model)
        error: dict[str, Any] = {"code": reply.status, "message": message, "status": status}
        retry = {k.lower(): v for k, v in reply.headers.items()}.get("retry-after")
        if reply.status == 429 and retry is not None:
            error["details"] = [{"@type": "type.googleapis.com/google.rpc.RetryInfo",
                                 "retryDelay": f"{retry}s"}]
        return {"error": error}


def _envelope(reply: Reply, ctx: Ctx, parts: list[dict[str, Any]], finish: str | None) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
    if finish:
        candidate["finishReason"] = finish
    candidate["index"] = 0
    return {"candidates": [candidate], "modelVersion": reply.model or ctx.model,
            "responseId": f"fake-gemini-{ctx.seq}"}


def _call_parts(reply: Reply) -> list[dict[str, Any]]:
    parts = []
    for spec in reply.tool_call_specs():
        args = spec.arguments if isinstance(spec.arguments, dict) else _loads(spec.arguments)
        parts.append({"functionCall": {"name": spec.name, "args": args}})
    return parts


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return {"_raw": text}


def _usage_metadata(u: dict[str, int], progress: float = 1.0) -> dict[str, Any]:
    """Neutral buckets in Gemini's semantics; ``progress`` < 1 gives a mid-stream running total."""
    prompt = u["input_tokens"] + u["cache_read_tokens"] + u["cache_write_tokens"]
    thoughts = u["reasoning_tokens"]
    candidates = round((u["output_tokens"] - thoughts) * progress)
    meta: dict[str, Any] = {"candidatesTokenCount": candidates, "promptTokenCount": prompt,
                            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}]}
    if u["cache_read_tokens"]:
        meta["cachedContentTokenCount"] = u["cache_read_tokens"]
        meta["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": u["cache_read_tokens"]}]
    if thoughts:
        meta["thoughtsTokenCount"] = thoughts
    meta["totalTokenCount"] = prompt + candidates + thoughts
    return meta
