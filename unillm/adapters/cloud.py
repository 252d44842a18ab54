"""Settings of the cloud variants (Azure OpenAI, Bedrock, Vertex), checked once, at load.

A ``[providers.NAME]`` table takes these keys beside the common ones (``api_key``,
``base_url``, ``timeout`` ...); each belongs to the protocols whose `AdapterSpec.settings`
list it, and a key set on any other provider is an error naming the protocols that take it::

    [providers.azure-eastus]
    adapter = "azure"
    base_url = "https://my-resource.openai.azure.com"   # the resource endpoint
    deployment = "gpt-4o-prod"                         # else the model id is the deployment
    api_version = "2024-10-21"

Credentials are secrets (`SecretStr`: never in a repr, a dump or an error). Python objects
(an Entra ``token_provider``, google-auth ``credentials``) can only be given through
``Client(providers=...)``; they are never dumped either.

Prices: a provider of a cloud protocol is priced by its own ``[NAME."model"]`` entries first,
then by its cloud's table (`price_table`): ``azure``, ``bedrock``, ``vertex-gemini``, and
``vertex-anthropic-global`` or ``-regional`` by ``location``; ``price_as`` names another.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, SecretStr, StrictBool, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from . import registry

if TYPE_CHECKING:
    from ..profiles import ProviderSettings

_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-preview)?$")
_AWS_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
_GCP_PROJECT = re.compile(r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$")
_GCP_LOCATION = re.compile(r"^(global|us|eu|[a-z]+-[a-z]+\d+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class CloudFields(BaseModel):
    """The keys of the cloud protocols (a base of `ProviderSettings`); unset, they are None."""

    # Azure OpenAI
    deployment: str | None = None          #: the Azure deployment name (default: the model id)
    api_version: str | None = None         #: ``api-version`` query (default: OPENAI_API_VERSION)
    entra: StrictBool = False              #: authenticate with Microsoft Entra ID (azure-identity)
    token_provider: Callable[[], Any] | None = Field(default=None, repr=False, exclude=True)
    # Amazon Bedrock
    region: str | None = None              #: AWS region (default: AWS_REGION, then the profile's)
    aws_profile: str | None = None
    aws_access_key_id: str | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_session_token: SecretStr | None = None
    # Google Vertex AI
    project: str | None = None             #: GCP project id (default: GOOGLE_CLOUD_PROJECT)
    location: str | None = None            #: ``global``, ``us-east5`` ... (default: GOOGLE_CLOUD_LOCATION)
    access_token: SecretStr | None = None  #: an OAuth access token (else google-auth's ADC)
    credentials: Any = Field(default=None, repr=False, exclude=True)  #: google-auth Credentials
    # every protocol
    price_as: str | None = None            #: the price-book provider whose entries price this one


#: the keys a protocol must list in `AdapterSpec.settings` to take them (``price_as``: every one)
CLOUD_KEYS: tuple[str, ...] = tuple(k for k in CloudFields.model_fields if k != "price_as")


def _is_set(settings: Any, key: str) -> bool:
    value = getattr(settings, key)
    return value is not None and value is not False


def _fail(problems: list[tuple[str, str, Any]]) -> None:
    if problems:
        raise ValidationError.from_exception_data("ProviderSettings", [
            InitErrorDetails(type=PydanticCustomError("cloud", message), loc=(key,), input=value)
            for key, message, value in problems])


def check(settings: ProviderSettings) -> None:
    """Raise a `ValidationError` (one line per bad key, each with its key) when ``settings``
    sets a key its protocol does not take, or a value no cloud would accept."""
    if registry.unknown(settings.adapter):
        return
    allowed = set(registry.get(settings.adapter).settings)
    problems: list[tuple[str, str, Any]] = []
    for key in CLOUD_KEYS:
        if _is_set(settings, key) and key not in allowed:
            takers = [s.protocol for s in registry.BUILTIN if key in s.settings]
            problems.append((key, (f"is not a setting of adapter {settings.adapter!r}; "
                                  f"it is for adapter {' or '.join(map(repr, takers))}"), getattr(settings, key)))
    if not problems:
        problems = list(_values(settings))
    _fail(problems)


def _values(s: ProviderSettings) -> Iterable[tuple[str, str, Any]]:
    if s.deployment is not None and not _NAME.match(s.deployment):
        yield "deployment", "must be an Azure deployment name (letters, digits, '.', '_', '-')", s.deployment
    if s.api_version is not None and not _API_VERSION.match(s.api_version):
        yield ("api_version", ('must be an Azure OpenAI API version like "2024-10-21" or '
               '"2025-04-01-preview"'), s.api_version)
    if s.entra and s.token_provider is not None:
        yield "entra", "give entra = true or a token_provider, not both", True
    if (s.entra or s.token_provider is not None) and s.api_key is not None:
        yield "api_key", "Azure takes one credential: an api_key or Entra ID (entra / token_provider)", "**********"
    if s.token_provider is not None and not callable(s.token_provider):
        yield "token_provider", "must be a function returning an Entra ID access token", None
    if s.region is not None and not _AWS_REGION.match(s.region):
        yield "region", 'must be an AWS region like "us-east-1" or "eu-west-3"', s.region
    yield from _aws_keys(s)
    if s.project is not None and not _GCP_PROJECT.match(s.project):
        yield ("project", ("must be a Google Cloud project id (6-30 lowercase letters, digits "
               "and hyphens, starting with a letter)"), s.project)
    if s.location is not None and not _GCP_LOCATION.match(s.location):
        yield "location", 'must be a Vertex AI location like "global", "us-east5" or "europe-west1"', s.location
    if s.access_token is not None and s.credentials is not None:
        yield "access_token", "give an access_token or credentials, not both", "**********"
    if s.price_as is not None and not s.price_as.strip():
        yield "price_as", "must name a provider of the price book", s.price_as


def _aws_keys(s: ProviderSettings) -> Iterable[tuple[str, str, Any]]:
    keys = s.aws_access_key_id is not None, s.aws_secret_access_key is not None
    if any(keys) and not all(keys):
        missing = "aws_secret_access_key" if keys[0] else "aws_access_key_id"
        yield missing, "AWS keys come in pairs: set aws_access_key_id and aws_secret_access_key", None
    if s.aws_session_token is not None and not all(keys):
        yield "aws_session_token", "needs aws_access_key_id and aws_secret_access_key", "**********"
    if s.aws_profile is not None and any(keys):
        yield "aws_profile", "give an aws_profile or AWS keys, not both", s.aws_profile
    if s.api_key is not None and (any(keys) or s.aws_profile is not None):
        yield ("api_key", ("Bedrock takes one credential: an api_key (a Bedrock API key) or AWS "
               "credentials (aws_* keys, aws_profile)"), "**********")


def secrets(s: ProviderSettings) -> list[str]:
    """The cloud credentials of ``s``, for redaction."""
    out = [v.get_secret_value() for v in (s.aws_secret_access_key, s.aws_session_token, s.access_token)
           if v is not None]
    token = getattr(s.credentials, "token", None)
    return out + ([token] if isinstance(token, str) else [])


# ── prices ───────────────────────────────────────────────────────────────────

def vertex_anthropic_table(settings: ProviderSettings) -> str:
    """Claude on Vertex is dearer outside the global endpoint (see pricing.toml)."""
    return "vertex-anthropic-global" if (settings.location or "global") == "global" else "vertex-anthropic-regional"


def price_table(settings: ProviderSettings) -> str | None:
    """The price-book provider that prices ``settings``'s calls after its own entries."""
    if settings.price_as:
        return settings.price_as
    if registry.unknown(settings.adapter):
        return None
    ref = registry.get(settings.adapter).prices
    if not ref or ":" not in ref:
        return ref or None
    function: Callable[[ProviderSettings], str] = registry._load(ref, settings.adapter, "prices")
    return function(settings)


def price_tables(providers: Mapping[str, ProviderSettings]) -> dict[str, str]:
    """``{provider: table}`` for every provider priced by another's entries."""
    out = {}
    for name, settings in providers.items():
        table = price_table(settings)
        if table and table != name:
            out[name] = table
    return out
