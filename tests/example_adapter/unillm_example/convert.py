"""The example protocol <-> unillm, as pure functions (no I/O, no SDK import)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from unillm import errors
from unillm.types import (
    BUCKETS,
    ChatRequest,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    FinishReason,
    ResponseMessage,
    StreamChunk,
    Usage,
    vendor_usage,
)

if TYPE_CHECKING:
    from unillm.profiles import ProviderSettings

_FINISH: dict[str, FinishReason] = {"end": "stop", "limit": "length"}


def to_request(request: ChatRequest, model: str, settings: ProviderSettings, *,
               stream: bool = False) -> dict[str, Any]:
    """The JSON body; a parameter the profile's capabilities refuse raises (or is dropped)."""
    for param in ("tools", "response_format", "seed", "top_k"):
        if getattr(request, param) is not None and not getattr(settings.capabilities, param, False):
            request.unsupported(settings.name, param, "")
    body: dict[str, Any] = {"model": model, "stream": stream,
                            "messages": [{"role": m.role, "content": m.text()} for m in request.messages]}
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    return body


def usage_from(meter: Any) -> Usage | None:
    if not isinstance(meter, Mapping):
        return None
    return vendor_usage(input=meter.get("prompt"), output=meter.get("completion"))


def detect(raw: Mapping[str, Any]) -> bool:
    """True when a JSON mapping is an example-protocol response (for ``unillm.track``)."""
    return "output" in raw and "meter" in raw


def from_response(raw: Any, provider: str) -> ChatResponse:
    if not isinstance(raw, Mapping) or not isinstance(raw.get("output"), str):
        raise errors.ResponseError("not an example-protocol response", provider=provider)
    return ChatResponse(
        id=raw.get("id") or "", created=int(time.time()), model=raw.get("model") or "",
        choices=[Choice(message=ResponseMessage(content=raw["output"]),
                        finish_reason=_FINISH.get(raw.get("stop") or "", "stop"))],
        usage=usage_from(raw.get("meter")), provider=provider)


class StreamState:
    """Events -> OpenAI-shaped chunks; ``complete`` once the ``done`` event arrived."""

    def __init__(self, provider: str, model: str) -> None:
        self.provider, self.model = provider, model
        self.created = int(time.time())
        self.usage: Usage | None = None
        self.complete = False

    def reported(self) -> tuple[Usage | None, frozenset[str]]:
        return self.usage, frozenset(BUCKETS) if self.usage is not None else frozenset()

    def feed(self, event: Mapping[str, Any]) -> list[StreamChunk]:
        if event.get("done"):
            self.complete, self.usage = True, usage_from(event.get("meter"))
            finish = _FINISH.get(event.get("stop") or "", "stop")
            return [self._chunk(Delta(), finish, self.usage)]
        text = event.get("delta")
        return [self._chunk(Delta(content=text))] if isinstance(text, str) and text else []

    def _chunk(self, delta: Delta, finish: FinishReason | None = None,
               usage: Usage | None = None) -> StreamChunk:
        return StreamChunk(id="", created=self.created, model=self.model, provider=self.provider,
                           choices=[ChunkChoice(delta=delta, finish_reason=finish)], usage=usage)
