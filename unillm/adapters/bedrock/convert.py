"""Anthropic's Messages shapes as a cloud serves them: named by the model id that was sent.

Bedrock and Vertex answer with Anthropic's ``model`` name (``claude-sonnet-4-5-20250929``),
but bill, and unillm prices, by the cloud's id (``anthropic.claude-sonnet-4-5-20250929-v1:0``,
``claude-sonnet-4-5@20250929``). The path named the model; the answer keeps that name.
"""

from __future__ import annotations

from typing import Any

from ...types import ChatResponse, StreamChunk
from ..anthropic.convert import StreamState


def from_response(raw: Any, provider: str, model: str) -> ChatResponse:
    from ..anthropic.convert import from_response as anthropic_response
    resp = anthropic_response(raw, provider)
    resp.model = model
    return resp


class SentModelState(StreamState):
    """`StreamState` whose chunks carry the model id that was sent."""

    def __init__(self, provider: str, model: str) -> None:
        super().__init__(provider)
        self.sent = model

    def _chunk(self, *args: Any, **kwargs: Any) -> StreamChunk:
        self.model = self.sent
        return super()._chunk(*args, **kwargs)

