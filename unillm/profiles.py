"""Provider profiles (``providers/*.toml``) and model-name resolution.

A profile is data: which wire protocol a vendor speaks, its base URL, the env var
holding its key, which bare model names belong to it, its default tokenizer and
its capabilities. Settings resolve in one order everywhere: constructor argument
-> ``unillm.toml`` ``[providers.NAME]`` -> the profile's env var -> the profile.

Resolution of a model string:

1. ``[aliases]`` from config (``fast = "google/gemini-2.5-flash"``);
2. ``provider/model`` where ``provider`` is a profile name or one of its ``prefixes``;
3. a bare name matched against the profiles' ``models`` globs (first profile wins,
   in ``priority`` order);
4. otherwise `UnknownModelError` with close matches.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from . import errors
from ._toml import load_toml, pydantic_error_to_config_error
from .adapters import cloud, registry
from .bundled import data_dir

if TYPE_CHECKING:
    from .adapters.base import Adapter

#: header names whose values are credentials
_SECRET_HEADER = re.compile(r"auth|key|token|secret|cookie|signature", re.IGNORECASE)


def is_secret_header(name: Any) -> bool:
    return isinstance(name, str) and _SECRET_HEADER.search(name) is not None


def _reveal(table: Mapping[str, Any]) -> dict[str, Any]:
    """A provider table from `Settings` with its `SecretStr` headers as plain text again
    (``api_key`` stays a SecretStr: ProviderSettings keeps it as one)."""
    headers = table.get("headers")
    if not isinstance(headers, Mapping) or not any(isinstance(v, SecretStr) for v in headers.values()):
        return dict(table)
    return {**table, "headers": {k: v.get_secret_value() if isinstance(v, SecretStr) else v
                                 for k, v in headers.items()}}


class Capabilities(BaseModel):
    """What the vendor's API accepts; adapters consult this, never the vendor's name.

    A profile's ``[capabilities]`` table is laid over its protocol's (the adapter registry's
    ``AdapterSpec.capabilities``), which is laid over these defaults.
    """

    model_config = ConfigDict(extra="forbid", defer_build=True)
    tools: bool = True
    tool_choice: bool = True
    json_object: bool = True
    json_schema: bool = True
    images: bool = True
    seed: bool = True
    stop: bool = True
    temperature: bool = True
    top_p: bool = True
    top_k: bool = True  # where the protocol has one (Chat Completions has none)
    stream_usage: bool = True  # honours stream_options.include_usage (OpenAI-compatible vendors)
    #: model globs that take ``max_completion_tokens`` and reject ``max_tokens`` (OpenAI's o-series)
    max_completion_tokens: list[str] = Field(default_factory=list)
    #: the vendor is OpenAI itself: the SDK may send OPENAI_ORG_ID / OPENAI_PROJECT_ID from the env
    openai_organization: bool = False


class ProviderSettings(cloud.CloudFields):
    """One provider, fully resolved: profile + config overrides + constructor overrides.
    The cloud protocols' keys (``deployment``, ``region``, ``project`` ...) come from
    `unillm.adapters.cloud.CloudFields`, checked against the protocol by `cloud.check`."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    name: str
    adapter: str                                          # a protocol of the adapter registry
    display_name: str | None = None
    base_url: str | None = None
    api_key_env: str | None = None
    api_key: SecretStr | None = None
    timeout: float = Field(default=600.0, gt=0)
    max_retries: int = Field(default=2, ge=0, le=20)
    models: list[str] = Field(default_factory=list)       # bare-name globs this provider owns
    prefixes: list[str] = Field(default_factory=list)     # extra names accepted before '/'
    priority: int = 100                                   # lower claims bare names first
    tokenizer: str = "cl100k_base"                        # default encoding for estimates
    tokenizer_exact: bool = False                         # True when tiktoken counts are exact
    headers: dict[str, str] = Field(default_factory=dict, repr=False)  # may carry credentials
    capabilities: Capabilities = Field(default_factory=Capabilities)
    docs: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _protocol_capabilities(cls, data: Any) -> Any:
        """The profile's ``[capabilities]`` over its protocol's (from the adapter registry)."""
        protocol = data.get("adapter") if isinstance(data, Mapping) else None
        if not isinstance(protocol, str) or registry.unknown(protocol):
            return data
        defaults = registry.get(protocol).capabilities
        own = data.get("capabilities")
        if not defaults or not (own is None or isinstance(own, (Mapping, Capabilities))):
            return data
        if isinstance(own, Capabilities):
            own = own.model_dump(exclude_unset=True)
        return {**data, "capabilities": {**defaults, **(own or {})}}

    @field_validator("adapter")
    @classmethod
    def _registered(cls, value: str) -> str:
        problem = registry.unknown(value)
        if problem:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _cloud_keys(self) -> ProviderSettings:
        cloud.check(self)
        return self

    @field_serializer("headers")
    def _masked(self, headers: dict[str, str]) -> dict[str, str]:
        """Dumps (``repr(settings.model_dump())``, JSON) never carry a credential header."""
        return {k: "**********" if is_secret_header(k) else v for k, v in headers.items()}

    def resolved_api_key(self) -> str | None:
        """Explicit key, else the profile's env var; never logged, never stored."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env:
            return os.environ.get(self.api_key_env)
        return None

    def secrets(self) -> list[str]:
        """What must never appear in an error or a log: the key, and header values that carry
        credentials (``Authorization``, ``x-api-key`` ...)."""
        out = [self.resolved_api_key() or ""]
        out += [v for k, v in self.headers.items() if is_secret_header(k)]
        for v in out[1:]:  # "Bearer sk-..." -> also the bare token
            out.append(v.partition(" ")[2])
        return [s for s in out + cloud.secrets(self) if s]

    def owns(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pat) for pat in self.models)


def profile_fields(provider: ProviderSettings) -> dict[str, Any]:
    """A resolved provider as a table again, secrets intact, for merging overrides over it."""
    return {name: getattr(provider, name) for name in type(provider).model_fields}


@dataclass(frozen=True, slots=True)
class ModelRef:
    """Where a model string leads: provider name, the vendor's model id, the wire protocol."""

    provider: str
    model: str
    adapter: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"


@functools.cache
def bundled_profiles() -> dict[str, dict[str, Any]]:
    """Raw profile tables from ``providers/*.toml``, read once per process."""
    out: dict[str, dict[str, Any]] = {}
    for path in sorted((data_dir() / "providers").glob("*.toml")):
        table = load_toml(path)
        table.setdefault("name", path.stem)
        out[table["name"]] = {**table, "_file": str(path)}
    return out


def build_settings(overrides: Mapping[str, Mapping[str, Any]] | None = None,
                   source: str = "Client(providers=...)") -> dict[str, ProviderSettings]:
    """Merge bundled profiles with overrides (config file, then constructor) and validate."""
    raw = {name: dict(table) for name, table in bundled_profiles().items()}
    for name, table in (overrides or {}).items():
        if not isinstance(table, Mapping):
            raise errors.ConfigError("must be a table of settings", file=source,
                                     key=f"providers.{name}", value=table)
        base = raw.get(name, {"name": name})
        if name not in raw and "adapter" not in table:
            close = errors.did_you_mean(name, sorted(raw))
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(sorted(raw))}"
            raise errors.ConfigError(
                "unknown provider: a new provider needs 'adapter' (and usually 'base_url')" + hint,
                file=source, key=f"providers.{name}")
        raw[name] = {**base, **_reveal(table)}
    settings = {}
    for name, table in raw.items():
        profile_file = table.pop("_file", source)
        try:
            settings[name] = ProviderSettings(**table)
        except ValidationError as exc:
            # blame the override when the bad key came from it, else the profile file
            bad = str(exc.errors()[0]["loc"][0]) if exc.errors() and exc.errors()[0]["loc"] else ""
            file = source if bad in (overrides or {}).get(name, {}) else profile_file
            raise pydantic_error_to_config_error(exc, file=file, prefix=f"providers.{name}") from None
    return settings


class Resolver:
    """Turns what a user wrote as ``model=`` into a `ModelRef`."""

    def __init__(self, providers: Mapping[str, ProviderSettings],
                 aliases: Mapping[str, str] | None = None) -> None:
        self.providers = dict(providers)
        self.aliases = dict(aliases or {})
        self._by_prefix: dict[str, str] = {}
        for name, p in self.providers.items():
            self._by_prefix[name] = name
            for pre in p.prefixes:
                self._by_prefix.setdefault(pre, name)
        self._ordered = sorted(self.providers.values(), key=lambda p: (p.priority, p.name))
        self._cache: dict[str, ModelRef] = {}

    def resolve(self, model: str) -> ModelRef:
        hit = self._cache.get(model)
        if hit is not None:
            return hit
        ref = self._resolve(model, seen=())
        if len(self._cache) < 4096:
            self._cache[model] = ref
        return ref

    def _resolve(self, model: str, seen: tuple[str, ...]) -> ModelRef:
        if not isinstance(model, str) or not model.strip():
            raise errors.InvalidRequestError("model must be a non-empty string", param="model")
        if model in self.aliases:
            if model in seen:
                raise errors.ConfigError(f"alias cycle: {' -> '.join((*seen, model))}", key="aliases")
            return self._resolve(self.aliases[model], (*seen, model))
        head, sep, rest = model.partition("/")
        if sep and head in self._by_prefix and rest:
            p = self.providers[self._by_prefix[head]]
            return ModelRef(p.name, rest, p.adapter)
        for p in self._ordered:
            if p.owns(model):
                return ModelRef(p.name, model, p.adapter)
        raise errors.UnknownModelError(model, errors.did_you_mean(model, self.known_names()),
                                       detail=("no provider named " + repr(head)) if sep else "")

    def known_names(self) -> Iterable[str]:
        names = set(self.aliases)
        names.update(f"{p}/" for p in self._by_prefix)
        try:
            from .pricing import bundled_model_names
            names.update(bundled_model_names())
        except (errors.UnillmError, OSError):  # a broken price book only loses its suggestions
            pass
        return sorted(names)


def load_adapter_class(protocol: str) -> type[Adapter]:
    """The adapter class of ``protocol``, from the adapter registry."""
    return registry.get(protocol).adapter_class()
