"""FakeProvider: Azure OpenAI's Chat Completions (``/openai/deployments/{d}/chat/completions``).

The body is OpenAI's (`OpenAIProtocol` renders it) with Azure's additions: content-filter
results on every choice, and ``prompt_filter_results`` (in a stream, first, in a chunk with
no choices and no model). The deployment comes from the path; ``api-version`` is a query
parameter the SDK adds (recorded in ``fake.requests[-1].query``). A request without it is
answered 404 as Azure does.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..replies import Ctx, Reply
from .openai import OpenAIProtocol

if TYPE_CHECKING:
    from ..fake import FakeProvider

_PATH = re.compile(r"^/openai/deployments/([^/]+)/chat/completions$")
_SAFE = {sev: {"filtered": False, "severity": "safe"} for sev in ("hate", "self_harm", "sexual", "violence")}


class AzureProtocol(OpenAIProtocol):
    name = "azure"
    base_path = ""   # the SDK's azure_endpoint: it adds /openai/deployments/{deployment}
    route = _PATH

    def deployment(self, path: str) -> str:
        return self.route_group(path, 1)

    def render(self, reply: Reply, ctx: Ctx) -> Any:
        body = super().render(reply, ctx)
        for choice in body["choices"]:
            choice["content_filter_results"] = dict(_SAFE)
        body["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": dict(_SAFE)}]
        return body

    def render_stream(self, reply: Reply, ctx: Ctx) -> Iterable[Any]:
        yield {"choices": [], "created": 0, "id": "", "model": "", "object": "",
               "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": dict(_SAFE)}]}
        yield from super().render_stream(reply, ctx)

    def client_settings(self, fake: FakeProvider) -> dict[str, Any]:
        return {"base_url": fake.url, "api_key": fake.api_key, "api_version": "2024-10-21"}
