"""FakeProvider: Vertex AI's publisher-model paths, for Claude and for Gemini.

* Claude: ``POST /v1/projects/{p}/locations/{l}/publishers/anthropic/models/{m}:rawPredict``
  (``:streamRawPredict`` streams server-sent events). The body is Anthropic's without
  ``model`` and with ``anthropic_version``; answers are `AnthropicProtocol`'s.
* Gemini: ``POST /{v1|v1beta1}/projects/{p}/locations/{l}/publishers/google/models/{m}:generateContent``
  (``:streamGenerateContent?alt=sse``); answers are `GoogleProtocol`'s.

The bearer token the SDKs send (``authorization``) is recorded, not verified.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..replies import Ctx, Reply
from .anthropic import AnthropicProtocol
from .bedrock import anthropic_name, with_model_name
from .google import GoogleProtocol

if TYPE_CHECKING:
    from ..fake import FakeProvider

_CLAUDE = re.compile(r"^/v1/projects/([^/]+)/locations/([^/]+)/publishers/anthropic/models/([^/:]+)"
                     r":(rawPredict|streamRawPredict)$")
_GEMINI = re.compile(r"^/(v1\w*)/projects/([^/]+)/locations/([^/]+)/publishers/google/models/([^/:]+)"
                     r":(generateContent|streamGenerateContent)$")


def _settings(fake: FakeProvider, base: str) -> dict[str, Any]:
    return {"base_url": fake.url + base, "project": "fake-project", "location": "global",
            "access_token": f"ya29.{fake.api_key}-access-token"}


class VertexAnthropicProtocol(AnthropicProtocol):
    name = "vertex-anthropic"
    base_path = "/v1"
    route = _CLAUDE
    stream_suffix = ":streamRawPredict"

    def model(self, path: str, body: Any) -> str:
        return self.route_group(path, 3)

    def render(self, reply: Reply, ctx: Ctx) -> Any:  # answered with Anthropic's name for it
        return {**super().render(reply, ctx), "model": reply.model or anthropic_name(ctx.model)}

    def render_stream(self, reply: Reply, ctx: Ctx) -> Iterable[Any]:
        return with_model_name(super().render_stream(reply, ctx), reply.model or anthropic_name(ctx.model))

    def client_settings(self, fake: FakeProvider) -> dict[str, Any]:
        return _settings(fake, self.base_path)


class VertexGeminiProtocol(GoogleProtocol):
    name = "vertex-gemini"
    base_path = ""
    route = _GEMINI   # streams as Gemini's do (``:streamGenerateContent``)

    def model(self, path: str, body: Any) -> str:
        return self.route_group(path, 4)

    def client_settings(self, fake: FakeProvider) -> dict[str, Any]:
        return _settings(fake, self.base_path)
