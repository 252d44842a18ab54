"""Embeddings over the OpenAI wire (``POST /embeddings``): pure functions, request -> body,
body -> `Vectors`. Serves OpenAI and every OpenAI-compatible profile with
``[capabilities] embeddings = true``.

Vectors are asked as base64 (float32), as the openai SDK asks by default: a quarter of the
bytes of JSON floats and no float parsing. A vendor that answers lists of floats anyway
(some OpenAI-compatible servers ignore ``encoding_format``) is read as well.
"""

from __future__ import annotations

import base64
import struct
from typing import TYPE_CHECKING, Any

from ... import errors
from ...embeddings.types import EmbedRequest, Vectors, unsupported
from ...types import Usage

if TYPE_CHECKING:
    from ...profiles import ProviderSettings


def to_body(request: EmbedRequest, model: str, settings: ProviderSettings) -> dict[str, Any]:
    caps = settings.capabilities
    if request.input_type is not None:
        raise unsupported(settings.name, "input_type", "a Cohere option; this vendor embeds every input alike")
    if request.task_type is not None:
        raise unsupported(settings.name, "task_type", "a Google option; this vendor embeds every input alike")
    body: dict[str, Any] = {"model": model, "input": request.input, "encoding_format": "base64"}
    if request.dimensions is not None:
        if not caps.embed_dimensions:
            raise unsupported(settings.name, "dimensions", "its embedding models have one output size")
        body[caps.embed_dimensions] = request.dimensions
    if request.user is not None:
        body["user"] = request.user
    body.update(request.extra)
    return body


def from_body(raw: Any, provider: str, model: str, count: int) -> Vectors:
    """The vectors of ``count`` inputs, in input order (``data`` sorted by ``index``)."""
    if not isinstance(raw, dict) or not isinstance(raw.get("data"), list):
        raise errors.ResponseError("the embeddings answer has no 'data' list", provider=provider, model=model,
                                   body=raw)
    items = sorted(raw["data"], key=lambda d: d.get("index", 0) if isinstance(d, dict) else 0)
    vectors = [_vector(item, provider, model) for item in items]
    if len(vectors) != count:
        raise errors.ResponseError(f"the vendor returned {len(vectors)} embeddings for {count} inputs",
                                   provider=provider, model=model)
    usage = raw.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    reported = Usage(input_tokens=tokens) if isinstance(tokens, int) and tokens >= 0 else None
    return Vectors(vectors, reported, str(raw.get("model") or model))


def _vector(item: Any, provider: str, model: str) -> list[float]:
    value = item.get("embedding") if isinstance(item, dict) else None
    if isinstance(value, str):
        data = base64.b64decode(value)
        return list(struct.unpack(f"<{len(data) // 4}f", data))
    if isinstance(value, list):
        return [float(x) for x in value]
    raise errors.ResponseError("an embedding is neither base64 nor a list of numbers", provider=provider,
                               model=model)
