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
from ..anthropic.clouds import CloudAnthropicAdapter
from ..base import ErrorWhere, require
from ..google.adapter import GoogleAdapter


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


class VertexAnthropicAdapter(CloudAnthropicAdapter):
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

    def translate_error(self, exc: BaseException, model: str) -> errors.ProviderError | None:
        return super().translate_error(exc, model) or _auth_error(
            exc, {"provider": self.provider, "model": model}, self.redactor().text)


class VertexGeminiAdapter(GoogleAdapter):
    """Gemini's generateContent on Vertex AI, through google-genai with ``vertexai=True``."""

    protocol = "vertex-gemini"

    def _make_client(self, async_: bool) -> Any:
        genai = require("google.genai")
        project, location = _where(self)
        return genai.Client(vertexai=True, project=project, location=location,
                            credentials=self._credentials(), http_options=self._http_options(async_))

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
