"""When a call reads the cache, when it writes it, for how long and in which namespace.

Per call, ``cache=``:

* ``None`` / ``True``: the defaults (below);
* ``False``: skip, no lookup and no store;
* ``"refresh"``: no lookup; call the vendor and overwrite the entry;
* ``{"ttl": 3600, "namespace": "exp-7"}``: override any of ``ttl`` (seconds, > 0),
  ``namespace``, ``refresh`` (bool) and ``sampled`` (bool, this call only).

Sampling: a request is *sampled* when its ``temperature`` is above 0 **or
unset** (unset means the vendor's default, which samples everywhere). The
temperature is part of the cache key, so a configured cache answers identical
requests from it whatever their temperature (``cache_sampled = true``, the
default). ``cache_sampled = false`` (or ``{"sampled": False}`` for one call)
caches only deterministic requests (``temperature=0``); a sampled request then
skips the cache.

Every call's ``cache_status`` (on the response and its ledger row) says what the
cache did: ``hit``, ``miss`` (looked up, not found, not stored: the call failed),
``stored``, or ``skipped:<reason>`` with reason ``off`` (no cache configured),
``disabled`` (``cache=False``), ``sampled`` (``cache_sampled = false``),
``refresh`` (``cache="refresh"`` when the answer was not stored), ``partial`` (a
stream that did not finish), ``capped`` (cut short by a budget's
output cap) or ``unstorable`` (an answer with nothing to replay).

TTL, first that is set: the call's ``ttl`` → the policy's ``ttl`` (settings) →
the backend URL's ``ttl`` → never expires.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import errors
from ..types import ChatRequest
from .base import configured_url

__all__ = ["CacheDecision", "CachePolicy", "CacheOption", "is_sampled", "SKIP", "OFF"]

#: what ``Client.chat(cache=...)`` accepts
CacheOption = bool | str | Mapping[str, Any] | None

_OPTION_KEYS = ("ttl", "namespace", "refresh", "sampled")


@dataclass(frozen=True, slots=True)
class CacheDecision:
    """What one call does with the cache. ``ttl`` None = the backend's default."""

    read: bool
    write: bool
    ttl: float | None = None
    namespace: str = "default"
    reason: str = ""  # why reading/writing is off: the ``skipped:<reason>`` of cache_status

    @property
    def active(self) -> bool:
        return self.read or self.write

    @property
    def status(self) -> str | None:
        """The call's cache_status before the lookup: ``skipped:<reason>`` when it reads nothing."""
        return None if self.read else f"skipped:{self.reason}"


SKIP = CacheDecision(read=False, write=False, reason="disabled")
OFF = CacheDecision(read=False, write=False, reason="off")


def is_sampled(request: ChatRequest) -> bool:
    """True when the answer is drawn at random: temperature above 0, or left to the vendor."""
    return request.temperature is None or request.temperature > 0


class CachePolicy:
    """Defaults from settings; `decide` applies one call's ``cache=`` option to them."""

    def __init__(self, *, ttl: float | None = None, sampled: bool = True,
                 namespace: str = "default", enabled: bool = True) -> None:
        try:
            self.ttl = _ttl(ttl, "cache_ttl")
            self.namespace = _namespace(namespace, "cache_namespace")
        except errors.InvalidRequestError as exc:
            raise errors.ConfigError(str(exc)) from None
        self.sampled = bool(sampled)
        self.enabled = enabled
        # the decisions of a call without a cache= option (immutable: shared by those calls)
        self._default = CacheDecision(read=True, write=True, ttl=self.ttl, namespace=self.namespace)
        self._unsampled = CacheDecision(read=False, write=False, ttl=self.ttl, namespace=self.namespace,
                                        reason="sampled")

    @classmethod
    def from_settings(cls, settings: Any) -> CachePolicy:
        """Read ``cache_ttl``, ``cache_sampled``, ``cache_namespace`` and ``cache`` (unset or "off")."""
        cache = getattr(settings, "cache", None)
        return cls(ttl=getattr(settings, "cache_ttl", None),
                   sampled=getattr(settings, "cache_sampled", True),
                   namespace=getattr(settings, "cache_namespace", None) or "default",
                   enabled=configured_url(cache) not in (None, "off"))

    def decide(self, request: ChatRequest, option: CacheOption = None) -> CacheDecision:
        """Read/write/ttl/namespace for this call; a malformed option is an InvalidRequestError."""
        if option is None and self.enabled:  # the common call: the defaults, nothing to parse
            return self._unsampled if not self.sampled and is_sampled(request) else self._default
        opts = _parse_option(option)
        if opts is None:
            return SKIP
        if not self.enabled:
            return OFF
        ttl = opts.get("ttl", self.ttl)
        namespace = opts.get("namespace", self.namespace)
        if is_sampled(request) and not opts.get("sampled", self.sampled):
            return CacheDecision(read=False, write=False, ttl=ttl, namespace=namespace, reason="sampled")
        refresh = bool(opts.get("refresh", False))
        return CacheDecision(read=not refresh, write=True, ttl=ttl, namespace=namespace,
                             reason="refresh" if refresh else "")


def _parse_option(option: CacheOption) -> dict[str, Any] | None:
    """The option as a dict of overrides, or None for "skip"."""
    if option is None or option is True:
        return {}
    if option is False:
        return None
    if isinstance(option, str):
        if option == "refresh":
            return {"refresh": True}
        raise errors.InvalidRequestError(
            f"cache={option!r} is not understood; use True, False, 'refresh' or "
            "{'ttl': seconds, 'namespace': name}", param="cache")
    if isinstance(option, Mapping):
        unknown = [k for k in option if k not in _OPTION_KEYS]
        if unknown:
            close = errors.did_you_mean(str(unknown[0]), _OPTION_KEYS)
            raise errors.InvalidRequestError(
                f"unknown cache option {unknown[0]!r}" + (f"; did you mean {close[0]!r}?" if close else
                                                         f"; known: {', '.join(_OPTION_KEYS)}"),
                param="cache")
        out = dict(option)
        if "ttl" in out:
            out["ttl"] = _ttl(out["ttl"], "cache.ttl")
        if "namespace" in out:
            out["namespace"] = _namespace(out["namespace"], "cache.namespace")
        for flag in ("refresh", "sampled"):
            if flag in out and not isinstance(out[flag], bool):
                raise errors.InvalidRequestError(f"cache.{flag} must be true or false", param="cache")
        return out
    raise errors.InvalidRequestError(
        f"cache= takes True, False, 'refresh' or a dict, not {type(option).__name__}", param="cache")


def _ttl(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise errors.InvalidRequestError(f"{name} must be a number of seconds > 0, not {value!r}",
                                         param="cache")
    return float(value)


def _namespace(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise errors.InvalidRequestError(f"{name} must be a non-empty string, not {value!r}", param="cache")
    return value
