"""Embeddings over google-genai's ``models.embed_content`` (the Gemini API's
``batchEmbedContents``): pure functions, request -> SDK kwargs, SDK response -> `Vectors`.

The Gemini Developer API reports no token count for embeddings (``usage_metadata`` is
read when present): the Client counts the inputs then, marked as an estimate.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ... import errors
from ...embeddings.types import EmbedRequest, Vectors, unsupported
from ...types import Usage

if TYPE_CHECKING:
    from ...profiles import ProviderSettings


def to_kwargs(request: EmbedRequest, model: str, settings: ProviderSettings,
              timeout: float | None) -> dict[str, Any]:
    if request.input_type is not None:
        raise unsupported(settings.name, "input_type",
                          "a Cohere option; Google takes task_type, e.g. RETRIEVAL_DOCUMENT or RETRIEVAL_QUERY")
    config: dict[str, Any] = {}
    if request.task_type is not None:
        config["task_type"] = request.task_type
    if request.dimensions is not None:
        config["output_dimensionality"] = request.dimensions
    if timeout is not None:  # milliseconds; 0 would mean none
        config["http_options"] = {"timeout": max(math.ceil(timeout * 1000), 1)}
    config.update(request.extra)
    return {"model": model, "contents": list(request.input), "config": config}


def from_response(resp: Any, provider: str, model: str, count: int) -> Vectors:
    embeddings = getattr(resp, "embeddings", None)
    if not isinstance(embeddings, list):
        raise errors.ResponseError("the embeddings answer has no embeddings", provider=provider, model=model)
    vectors = [list(getattr(e, "values", None) or []) for e in embeddings]
    if len(vectors) != count or any(not v for v in vectors):
        raise errors.ResponseError(f"the vendor returned {len(vectors)} embeddings for {count} inputs",
                                   provider=provider, model=model)
    meta = getattr(resp, "usage_metadata", None)
    tokens = getattr(meta, "prompt_token_count", None) if meta is not None else None
    reported = Usage(input_tokens=tokens) if isinstance(tokens, int) and tokens >= 0 else None
    return Vectors(vectors, reported, model)
