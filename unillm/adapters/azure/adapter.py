"""Azure OpenAI through the official ``openai`` SDK's ``AzureOpenAI`` / ``AsyncAzureOpenAI``.

Chat Completions as `OpenAIAdapter` sends it (same body, converter and error mapping); the
SDK's Azure client adds what differs on the wire: ``/openai/deployments/{deployment}``
paths, the ``api-version`` query and the ``api-key`` (or Entra ``Authorization``) header.

Settings (`unillm.adapters.cloud`): ``base_url`` is the resource endpoint
(``https://RESOURCE.openai.azure.com``; default ``AZURE_OPENAI_ENDPOINT``), ``deployment``
(default: the model id is the deployment name), ``api_version`` (default
``OPENAI_API_VERSION``, then `API_VERSION`), and one credential: ``api_key`` (``AZURE_OPENAI_API_KEY``),
``token_provider`` (a function returning an Entra ID token) or ``entra = true``
(azure-identity's ``DefaultAzureCredential``).
"""

from __future__ import annotations

import os
from typing import Any

from ... import errors
from ..base import require
from ..openai.adapter import OpenAIAdapter

#: the scope of Azure OpenAI's Entra ID tokens
ENTRA_SCOPE = "https://cognitiveservices.azure.com/.default"
#: the data-plane API version used when neither ``api_version`` nor OPENAI_API_VERSION says one
#: (the latest GA data-plane version when this was written; set api_version for a newer one)
API_VERSION = "2024-10-21"


class AzureAdapter(OpenAIAdapter):
    """``chat.completions`` on an Azure OpenAI deployment."""

    protocol = "azure"

    def _make_client(self, async_: bool) -> Any:
        openai = require("openai")
        s = self.settings
        cls = openai.AsyncAzureOpenAI if async_ else openai.AzureOpenAI
        client = cls(azure_endpoint=self._setting("base_url", s.base_url, "AZURE_OPENAI_ENDPOINT",
                                                  "the resource endpoint, https://RESOURCE.openai.azure.com"),
                     azure_deployment=s.deployment,
                     api_version=s.api_version or os.environ.get("OPENAI_API_VERSION") or API_VERSION,
                     timeout=s.timeout, max_retries=0, default_headers=dict(s.headers) or None,
                     **self._credential())
        client.organization = client.project = None  # OPENAI_ORG_ID is OpenAI's, not Azure's
        return client

    def _setting(self, key: str, value: str | None, env: str, what: str) -> str:
        found = value or os.environ.get(env)
        if not found:
            raise errors.ConfigError(f"Azure OpenAI needs {what}: set providers.{self.provider}.{key} "
                                     f"or {env}", key=f"providers.{self.provider}.{key}")
        return found

    def _credential(self) -> dict[str, Any]:
        """Exactly one credential, explicit, so the SDK never picks one from the environment."""
        s = self.settings
        if s.token_provider is not None:
            return {"azure_ad_token_provider": s.token_provider}
        if s.entra:
            identity = require("azure.identity")
            provider = identity.get_bearer_token_provider(identity.DefaultAzureCredential(), ENTRA_SCOPE)
            return {"azure_ad_token_provider": provider}
        key = s.resolved_api_key()
        if not key:
            where = f"set {s.api_key_env} or " if s.api_key_env else ""
            raise errors.AuthenticationError(
                f"no Azure credential: {where}pass api_key, token_provider or entra = true in "
                f"providers.{self.provider}", provider=self.provider)
        return {"api_key": key}
