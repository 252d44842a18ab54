"""The adapter registry: every wire protocol unillm speaks, each declared once.

An `AdapterSpec` says all the rest of unillm needs to know of a protocol: its adapter
class, its converter (``from_response`` for `unillm.track`), the SDK module it imports and
the pip requirement that installs it, how ``track()`` recognises its responses, the
`FakeProvider` protocol that serves it offline, and the capabilities its profiles start from.
A profile's ``adapter = "..."`` must name a registered protocol (checked when it is loaded).

The built-in protocols are listed below. Another package adds one through the entry-point
group ``unillm.adapters``: the entry's name is the protocol, its value an `AdapterSpec`::

    [project.entry-points."unillm.adapters"]
    example = "unillm_example:ADAPTER"

Entry points are listed without importing anything; a package's spec is imported the first
time a profile, ``track()`` or FakeProvider needs it. References inside a spec are
``"module:attribute"`` strings for the same reason: nothing here imports an adapter or an SDK.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, Any

from .. import errors

if TYPE_CHECKING:
    from .base import Adapter

#: the entry-point group third-party adapters register in
GROUP = "unillm.adapters"


@dataclass(frozen=True)
class AdapterSpec:
    """One wire protocol, in one place. ``"module:attribute"`` references are imported lazily."""

    protocol: str                     #: what a profile writes as ``adapter = "..."``
    adapter: str                      #: ``"module:Class"``, an `unillm.adapters.base.Adapter`
    converter: str                    #: module with ``from_response(raw, provider[, model=])``
    sdk_module: str = ""              #: imported by ``Adapter.load_sdk``; its objects are ours to track
    extra: str = ""                   #: the unillm extra that installs the SDK (``openai``), or
    install: str = ""                 #: the pip requirement that does, when no unillm extra does
    detect: str = ""                  #: ``"module:function"``: is this JSON mapping our response?
    fake: str = ""                    #: ``"module:Class"``, the FakeProvider protocol serving it
    names_model: bool = True          #: responses say which model answered (else track needs model=)
    capabilities: Mapping[str, Any] = field(default_factory=dict)  #: under a profile's [capabilities]
    settings: tuple[str, ...] = ()    #: the `unillm.adapters.cloud` keys its providers take
    prices: str = ""                  #: price-book provider (or ``"module:function"`` of the
    #: settings) pricing its providers after their own entries (`unillm.adapters.cloud.price_table`)

    def __post_init__(self) -> None:
        object.__setattr__(self, "capabilities", MappingProxyType(dict(self.capabilities)))

    @property
    def requirement(self) -> str:
        """What ``pip install`` gets this protocol's SDK (``unillm[openai]``)."""
        return self.install or (f"unillm[{self.extra}]" if self.extra else "")

    def adapter_class(self) -> type[Adapter]:
        cls: type[Adapter] = _load(self.adapter, self.protocol, "adapter")
        return cls

    def converter_module(self) -> ModuleType:
        return importlib.import_module(self.converter)

    def fake_protocol(self) -> Any:
        """An instance of this protocol's FakeProvider protocol (None when it has none)."""
        return _load(self.fake, self.protocol, "fake")() if self.fake else None

    def made(self, raw: Any) -> bool:
        """True when ``raw`` is an object of this protocol's SDK."""
        module = type(raw).__module__ or ""
        top = self.sdk_module
        return bool(top) and (module == top or module.startswith(top + "."))

    def shaped(self, raw: Mapping[str, Any]) -> bool:
        """True when the JSON mapping ``raw`` has this protocol's response shape."""
        if not self.detect:
            return False
        check: Callable[[Mapping[str, Any]], bool] = _load(self.detect, self.protocol, "detect")
        return bool(check(raw))


def _builtin(protocol: str, cls: str, *, sdk: str, extra: str, **kw: Any) -> AdapterSpec:
    base = f"unillm.adapters.{protocol}"
    return AdapterSpec(protocol, f"{base}.adapter:{cls}", f"{base}.convert", sdk_module=sdk,
                       extra=extra, detect=f"{base}.convert:detect",
                       fake=f"unillm.testing.protocols.{protocol}:{cls.removesuffix('Adapter')}Protocol",
                       **kw)


#: the protocols unillm ships, in the order ``track()`` tries their response shapes
BUILTIN: tuple[AdapterSpec, ...] = (
    _builtin("openai", "OpenAIAdapter", sdk="openai", extra="openai",
             capabilities={"top_k": False}),  # Chat Completions has no top_k
    _builtin("anthropic", "AnthropicAdapter", sdk="anthropic", extra="anthropic"),
    _builtin("google", "GoogleAdapter", sdk="google.genai", extra="google"),
    _builtin("cohere", "CohereAdapter", sdk="cohere", extra="cohere", names_model=False),
    # the cloud variants: the vendors' own wire bodies (converters) through their SDKs' cloud clients
    AdapterSpec("azure", "unillm.adapters.azure.adapter:AzureAdapter", "unillm.adapters.openai.convert",
                sdk_module="openai", extra="openai", fake="unillm.testing.protocols.azure:AzureProtocol",
                capabilities={"top_k": False}, prices="azure",
                settings=("deployment", "api_version", "entra", "token_provider")),
    AdapterSpec("bedrock", "unillm.adapters.bedrock.adapter:BedrockAdapter", "unillm.adapters.anthropic.convert",
                sdk_module="anthropic", extra="bedrock", fake="unillm.testing.protocols.bedrock:BedrockProtocol",
                prices="bedrock",
                settings=("region", "aws_profile", "aws_access_key_id", "aws_secret_access_key",
                          "aws_session_token")),
    AdapterSpec("vertex-anthropic", "unillm.adapters.vertex.adapter:VertexAnthropicAdapter",
                "unillm.adapters.anthropic.convert", sdk_module="anthropic", extra="vertex",
                fake="unillm.testing.protocols.vertex:VertexAnthropicProtocol",
                prices="unillm.adapters.cloud:vertex_anthropic_table",
                settings=("project", "location", "access_token", "credentials")),
    AdapterSpec("vertex-gemini", "unillm.adapters.vertex.adapter:VertexGeminiAdapter",
                "unillm.adapters.google.convert", sdk_module="google.genai", extra="vertex",
                fake="unillm.testing.protocols.vertex:VertexGeminiProtocol",
                prices="vertex-gemini", settings=("project", "location", "access_token", "credentials")),
)


@functools.lru_cache(maxsize=1)
def _entry_points() -> dict[str, metadata.EntryPoint]:
    builtin = {s.protocol for s in BUILTIN}
    return {ep.name: ep for ep in metadata.entry_points(group=GROUP) if ep.name not in builtin}


def names() -> list[str]:
    """Every registered protocol: the built-in ones, then entry points (nothing is imported)."""
    return [s.protocol for s in BUILTIN] + sorted(_entry_points())


def unknown(protocol: object) -> str | None:
    """Why ``protocol`` cannot be a profile's ``adapter`` (None when it is registered)."""
    known = names()
    if isinstance(protocol, str) and protocol in known:
        return None
    close = errors.did_you_mean(protocol, known) if isinstance(protocol, str) else []
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown adapter {protocol!r}; {hint}registered: {', '.join(known)}"


def get(protocol: str) -> AdapterSpec:
    """The spec of ``protocol``; `ConfigError` when none is registered or its package is broken."""
    for spec in BUILTIN:
        if spec.protocol == protocol:
            return spec
    return _from_entry_point(protocol)


@functools.cache
def _from_entry_point(protocol: str) -> AdapterSpec:
    ep = _entry_points().get(protocol)
    if ep is None:
        raise errors.ConfigError(unknown(protocol) or f"unknown adapter {protocol!r}", key="adapter")
    where = f"entry point {ep.name} = {ep.value!r} (group {GROUP})"
    try:
        spec = ep.load()
    except Exception as exc:
        raise errors.ConfigError(f"cannot load {where}: {type(exc).__name__}: {exc}", key="adapter") from exc
    if not isinstance(spec, AdapterSpec) or spec.protocol != protocol:
        raise errors.ConfigError(f"{where} must be an AdapterSpec with protocol={protocol!r}, "
                                 f"got {spec!r}", key="adapter")
    return spec


def specs() -> list[AdapterSpec]:
    """Every registered protocol's spec, in `names` order (entry points are imported)."""
    return [get(name) for name in names()]


def sdk_of(module: str) -> AdapterSpec | None:
    """The protocol whose SDK ``module`` belongs to (``google.genai.types`` is google's, as
    ``google.genai`` is); None when it is no protocol's."""
    for spec in _loadable():
        top = spec.sdk_module
        if top and spec.requirement and (module == top or module.startswith(top + ".")):
            return spec
    return None


def _loadable() -> list[AdapterSpec]:
    """Every spec that loads: a broken plugin must not hide another SDK's install hint."""
    out = list(BUILTIN)
    for name in _entry_points():
        try:
            out.append(_from_entry_point(name))
        except errors.ConfigError:
            continue
    return out


def _load(ref: str, protocol: str, what: str) -> Any:
    module, _, attr = ref.partition(":")
    try:
        obj = importlib.import_module(module)
        for part in attr.split(".") if attr else ():
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        if isinstance(exc, errors.MissingDependencyError):
            raise
        raise errors.ConfigError(f"adapter {protocol!r}: cannot load its {what} {ref!r}: {exc}",
                                 key="adapter") from exc
    return obj
