"""The canonical cache key: sha256 over canonical JSON of everything that shapes the answer.

Computed after routing, from the `ModelRef` the call will actually use (provider
and the vendor's model id) and the validated `ChatRequest`. Two requests share a
key exactly when a vendor would see the same request:

* in the key: provider, resolved model, messages, tools, tool_choice,
  response_format, temperature, top_p, max_tokens, stop, seed, the penalties,
  top_k, reasoning_effort, parallel_tool_calls and every ``extra`` parameter;
* not in the key: the model string the caller typed (an alias), ``user`` (an
  abuse-monitoring id that does not change the answer), ``drop_params``, tags,
  sections and client options;
* canonical forms: dict key order is irrelevant (sorted), an integral float is
  its integer (``1.0`` == ``1``), ``-0.0`` is ``0``, ``stop`` is a sorted list
  (``"x"`` == ``["x"]``), a ``None`` field is an absent one, and a content list
  holding a single text part is that text.

Nothing process-specific goes in (no ``hash()``), so keys survive restarts. The
namespace and `KEY_SCHEMA_VERSION` are hashed too: bump the version whenever this
file changes which requests share a key, and every old entry becomes unreachable.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..profiles import ModelRef
from ..types import ChatRequest

__all__ = ["KEY_SCHEMA_VERSION", "cache_key", "canonical_payload"]

KEY_SCHEMA_VERSION = 1

# request fields that never change what the vendor answers
_NOT_IN_KEY: set[str] = {"model", "user", "drop_params", "response_model"}  # a set: pydantic's `exclude`

_encoder = json.JSONEncoder(ensure_ascii=True, sort_keys=True, separators=(",", ":"), allow_nan=True)


def _make_dumps() -> Any:
    """``_encoder.encode`` with the C encoder built once, not on every call (that was most of
    a small request's dump); the same text, character for character (the golden key test)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator (another interpreter): the encoder as it is
        return _encoder.encode
    iterencode = make(None, _encoder.default, json.encoder.encode_basestring_ascii, None,
                      ":", ",", True, False, True)  # no cycle markers: model_dump output is a tree
    return lambda value: "".join(iterencode(value, 0))


_dumps = _make_dumps()


def cache_key(ref: ModelRef, request: ChatRequest, *, namespace: str = "default") -> str:
    """The hex sha256 key of ``request`` as sent to ``ref`` within ``namespace``."""
    if not isinstance(namespace, str) or not namespace:
        raise ValueError("cache namespace must be a non-empty string")
    text = _dumps(canonical_payload(ref, request, namespace=namespace))
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def canonical_payload(ref: ModelRef, request: ChatRequest, *, namespace: str = "default") -> dict[str, Any]:
    """What `cache_key` hashes, as plain JSON data (handy to see why two keys differ)."""
    body = request.model_dump(mode="json", by_alias=True, exclude_none=True, exclude=_NOT_IN_KEY)
    messages = [_message(m) for m in body.pop("messages")]
    if "stop" in body:
        body["stop"] = sorted(body["stop"])
    if not body.get("extra"):
        body.pop("extra", None)
    canonical = _canon(body)
    canonical["messages"] = messages  # no float can be in a `Message` (str fields only): nothing to canonicalize
    return {"v": KEY_SCHEMA_VERSION, "ns": namespace, "provider": ref.provider, "model": ref.model,
            "request": canonical}


def _message(m: dict[str, Any]) -> dict[str, Any]:
    content = m.get("content")
    if isinstance(content, list) and len(content) == 1 and content[0].get("type") == "text":
        m["content"] = content[0]["text"]
    return m


def _canon(value: Any) -> Any:
    """Integral floats become ints, recursively; everything else is kept as is."""
    kind = type(value)
    if kind is float:
        return int(value) if value.is_integer() else value
    if kind is dict:
        return {k: _canon(v) for k, v in value.items()}
    if kind is list:
        return [_canon(v) for v in value]
    return value
