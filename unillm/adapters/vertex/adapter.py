"""Google Vertex AI: Claude through ``anthropic.AnthropicVertex``, Gemini through
``google.genai.Client(vertexai=True)``; both the official SDKs' Vertex clients.

Each keeps its vendor's body, converter and error mapping (`AnthropicAdapter`,
`GoogleAdapter`); the SDK builds Vertex's publisher-model path
(``/projects/{project}/locations/{location}/publishers/{anthropic|google}/models/{model}:...``)
and authenticates with a Google OAuth token.

Settings (`unillm.adapters.cloud`): ``project`` (default ``GOOGLE_CLOUD_PROJECT``),
``location`` (default ``GOOGLE_CLOUD_LOCATION``, else ``global``), and ``access_token`` or a
google-auth ``credentials`` object; neither: Application Default Credentials (google-auth).
"""

from __future__ import annotations

import os
import sys
from typing import Any

from ... import errors
from ...types import ChatRequest, ChatResponse
from ..anthropic.adapter import AnthropicAdapter
from ..base import ErrorWhere, json_body, require
from ..bedrock.convert import SentModelState, from_response
from ..google.adapter import GoogleAdapter, _remember_response


def _where(adapter: Any) -> tuple[str, str]:
    """``(project, location)``: the settings, else Google's environment variables."""
    s = adapter.settings
    project = s.project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    if not project:
        raise errors.ConfigError(f"Vertex AI needs a project: set providers.{adapter.provider}.project or "
                                 "GOOGLE_CLOUD_PROJECT", key=f"providers.{adapter.provider}.project")
    return project, s.location or os.environ.get("GOOGLE_CLOUD_LOCATION") or "global"


def _auth_error(exc: BaseException, where: ErrorWhere, scrub: Any) -> errors.ProviderError | None:
    """google-auth's failures (no ADC, a refresh refused) as ours."""
    auth = sys.modules.get("google.auth.exceptions")
    if auth is not None and isinstance(exc, auth.GoogleAuthError):
        return errors.AuthenticationError(f"Google credentials: {scrub(str(exc))}", **where)
    return None


class VertexAnthropicAdapter(AnthropicAdapter):
    """Claude's Messages API on Vertex AI (``:rawPredict`` / ``:streamRawPredict``)."""

    protocol = "vertex-anthropic"

    def _make_client(self, async_: bool) -> Any:
        anthropic = require("anthropic")
        s = self.settings
        project, location = _where(self)
        cls = anthropic.AsyncAnthropicVertex if async_ else anthropic.AnthropicVertex
        return cls(project_id=project, region=location, base_url=s.base_url,
                   access_token=s.access_token.get_secret_value() if s.access_token else None,
                   credentials=s.credentials, timeout=s.timeout, max_retries=0,
                   default_headers=s.headers or None)

    def complete(self, request: ChatRequest, model: str, timeout: float | None = None) -> ChatResponse:
        raw = self.sync_client().messages.with_raw_response.create(**self._kwargs(request, model, timeout))
        return from_response(json_body(raw), self.provider, model)

    async def acomplete(self, request: ChatRequest, model: str, timeout: float | None = None) -> ChatResponse:
        raw = await self.async_client().messages.with_raw_response.create(**self._kwargs(request, model, timeout))
        return from_response(json_body(raw), self.provider, model)

    def stream_state(self, model: str) -> Any:
        return SentModelState(self.provider, model)

    def translate_error(self, exc: BaseException, model: str) -> errors.ProviderError | None:
        return super().translate_error(exc, model) or _auth_error(
            exc, {"provider": self.provider, "model": model}, self.redactor().text)


class VertexGeminiAdapter(GoogleAdapter):
    """Gemini's generateContent on Vertex AI, through google-genai with ``vertexai=True``."""

    protocol = "vertex-gemini"

    def _make_client(self, async_: bool) -> Any:
        genai = require("google.genai")
        types = require("google.genai.types")
        s = self.settings
        project, location = _where(self)
        options = types.HttpOptions(
            base_url=s.base_url or None,
            timeout=int(s.timeout * 1000),  # the SDK takes milliseconds
            headers=dict(s.headers) or None,
            retry_options=types.HttpRetryOptions(attempts=1),
            async_client_args={"event_hooks": {"response": [_remember_response]}} if async_ else None,
        )
        return genai.Client(vertexai=True, project=project, location=location,
                            credentials=self._credentials(), http_options=options)

    def _credentials(self) -> Any:
        """The google-auth credentials: given, made of the access token, or None (ADC)."""
        s = self.settings
        if s.credentials is not None:
            return s.credentials
        if s.access_token is None:
            return None
        oauth2 = require("google.oauth2.credentials")
        return oauth2.Credentials(token=s.access_token.get_secret_value())

    def translate_error(self, exc: BaseException, model: str) -> errors.ProviderError | None:
        return super().translate_error(exc, model) or _auth_error(
            exc, {"provider": self.provider, "model": model}, self._scrub)
