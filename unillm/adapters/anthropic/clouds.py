"""Claude on a cloud (Bedrock, Vertex): the Anthropic adapter, but each answer is recorded
under the cloud's model id that was sent (what the cloud bills), not the Anthropic name the
answer carries."""

from __future__ import annotations

from typing import Any

from ...types import ChatRequest, ChatResponse
from ..base import json_body
from ..bedrock.convert import SentModelState, from_response
from .adapter import AnthropicAdapter


class CloudAnthropicAdapter(AnthropicAdapter):
    def complete(self, request: ChatRequest, model: str, timeout: float | None = None) -> ChatResponse:
        raw = self.sync_client().messages.with_raw_response.create(**self._kwargs(request, model, timeout))
        return from_response(json_body(raw), self.provider, model)

    async def acomplete(self, request: ChatRequest, model: str, timeout: float | None = None) -> ChatResponse:
        raw = await self.async_client().messages.with_raw_response.create(**self._kwargs(request, model, timeout))
        return from_response(json_body(raw), self.provider, model)

    def stream_state(self, model: str) -> Any:
        return SentModelState(self.provider, model)
