"""`track`: price and record a response your code got from a vendor SDK directly.

::

    raw = openai.OpenAI().chat.completions.create(...)
    unillm.track(raw)                                   # vendor detected from the object
    unillm.track(anthropic_json, provider="anthropic", tags={"project": "bot"})
    unillm.track(cohere_resp, model="command-a-03-2025", at=started)   # priced at that date's rate
    unillm.track(perplexity_json, provider="perplexity", units={"calls": 1})

Usage is extracted by the same converters the adapters use (so cached, cache-write
and reasoning tokens land in the same buckets), priced from the price book at ``at``
(when the call ran; default now), and recorded in the ledger of ``client`` (default: a
`Client()` with default settings). ``units`` are non-token quantities priced per unit
(see `Ledger.record`). A vendor whose responses do not name their model (Cohere's v2
chat) needs ``model=``, unless the body carries a ``model`` field.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from . import errors
from .adapters import registry
from .ledger.fields import REPORTED

_DEFAULT: Any = None
_LOCK = threading.Lock()


def track(response: Any, provider: str | None = None, *, model: str | None = None,
          tags: Mapping[str, str] | None = None, latency_ms: float | None = None,
          at: datetime | str | None = None, units: Mapping[str, Any] | None = None,
          client: Any = None) -> Any:
    """Record ``response`` (an SDK object, its JSON text or dict); returns the `CallRecord`.

    ``at``: when the call ran (a datetime or ISO text), so a response tracked later is
    priced at the rate in force then. ``units``: metered non-token quantities
    (``{"images": 2}``), priced with the book's per-unit prices into ``other_usd``.
    """
    client = client or _default_client()
    raw = _load(response)
    provider = provider or _provider_of(_detect(raw), client.providers)
    if provider not in client.providers:
        close = errors.did_you_mean(provider, client.providers)
        raise errors.InvalidRequestError(
            f"unknown provider {provider!r}" + (f"; did you mean {close[0]!r}?" if close else ""),
            param="provider")
    protocol = client.providers[provider].adapter
    spec = registry.get(protocol)
    # a protocol whose responses do not name their model gets the one the caller names
    unnamed = not spec.names_model
    name = model or (_named_model(raw) if unnamed else None)
    convert = spec.converter_module()
    try:
        resp = convert.from_response(raw, provider, **({"model": name or ""} if unnamed else {}))
    except errors.UnillmError as exc:
        raise errors.InvalidRequestError(f"not a readable {protocol} response: {exc}", param="response") from exc
    except (TypeError, ValueError, KeyError, AttributeError) as exc:
        raise errors.InvalidRequestError(f"not a readable {protocol} response: {exc!r}",
                                         param="response") from exc
    if resp.usage is None:
        raise errors.InvalidRequestError("the response carries no usage to record", param="usage")
    name = name or resp.model
    if not name:
        raise errors.InvalidRequestError(
            f"{protocol} responses do not say which model answered: pass model= (the model you "
            f"asked for, e.g. track(resp, model='...'))", param="model")
    reported = {f.name: getattr(resp.usage, f.usage) for f in REPORTED if f.usage}  # every bucket, its source
    return client.ledger.record(provider=provider, model=name, tags=tags, latency_ms=latency_ms, at=at,
                                units=units, **reported)


def _named_model(raw: Any) -> str | None:
    """The ``model`` a response body carries when its schema has none (an extra field)."""
    value = raw.get("model") if isinstance(raw, Mapping) else getattr(raw, "model", None)
    if value is None and not isinstance(raw, Mapping):
        extra = getattr(raw, "model_extra", None) or {}
        value = extra.get("model")
    return value if isinstance(value, str) and value.strip() else None


def _default_client() -> Any:
    global _DEFAULT
    with _LOCK:
        if _DEFAULT is None:
            import atexit

            from .client import Client
            _DEFAULT = Client()
            atexit.register(_DEFAULT.close)  # its ledger file, pool and threads, at exit
        return _DEFAULT


def _load(response: Any) -> Any:
    if isinstance(response, (str, bytes, bytearray)):
        try:
            return json.loads(response)
        except ValueError as exc:
            raise errors.InvalidRequestError(f"response is not valid JSON: {exc}", param="response") from None
    if response is None:
        raise errors.InvalidRequestError("response is None", param="response")
    return response


def _provider_of(protocol: str, providers: Mapping[str, Any]) -> str:
    """The provider a detected protocol's response is recorded under: the one of that name
    (openai, anthropic ...), else the first whose profile speaks it."""
    if protocol in providers:
        return protocol
    return next((name for name, p in providers.items() if p.adapter == protocol), protocol)


def _detect(raw: Any) -> str:
    """The protocol whose SDK made ``raw`` (by its class's module), or whose JSON shape it has
    (each registered protocol's detector, in registry order)."""
    specs = registry.specs()
    spec = next((s for s in specs if s.made(raw)), None)
    if spec is None and isinstance(raw, Mapping):
        spec = next((s for s in specs if s.shaped(raw)), None)
    if spec is not None:
        return spec.protocol
    names = ", ".join(repr(s.protocol) for s in specs[1:])
    raise errors.InvalidRequestError(
        f"cannot tell which vendor made a {type(raw).__name__}: pass provider={specs[0].protocol!r} "
        f"(or {names}, or an OpenAI-compatible profile name)", param="provider")
