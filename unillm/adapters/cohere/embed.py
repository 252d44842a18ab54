"""Embeddings over Cohere's v2 ``embed`` (``ClientV2.embed``): pure functions, request ->
SDK kwargs, SDK response -> `Vectors`. Cohere bills ``meta.billed_units.input_tokens``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ... import errors
from ...embeddings.types import EmbedRequest, Vectors, unsupported
from ...types import Usage

if TYPE_CHECKING:
    from ...profiles import ProviderSettings

_INPUT_TYPES = "search_document, search_query, classification or clustering"


def to_kwargs(request: EmbedRequest, model: str, settings: ProviderSettings,
              timeout: float | None) -> dict[str, Any]:
    if request.task_type is not None:
        raise unsupported(settings.name, "task_type", f"a Google option; Cohere takes input_type: {_INPUT_TYPES}")
    if request.input_type is None:
        raise errors.InvalidRequestError(
            f"{settings.name} embeddings need input_type ({_INPUT_TYPES}): Cohere embeds a document "
            "and a query differently", param="input_type")
    kwargs: dict[str, Any] = {"model": model, "texts": list(request.input), "input_type": request.input_type,
                              "embedding_types": ["float"]}
    if request.dimensions is not None:
        kwargs["output_dimension"] = request.dimensions
    if timeout is not None:
        kwargs["request_options"] = {"timeout_in_seconds": timeout}
    kwargs.update(request.extra)
    return kwargs


def from_response(resp: Any, provider: str, model: str, count: int) -> Vectors:
    by_type = getattr(resp, "embeddings", None)
    vectors = getattr(by_type, "float_", None)
    if not isinstance(vectors, list):
        raise errors.ResponseError("the embed answer has no float embeddings", provider=provider, model=model)
    if len(vectors) != count:
        raise errors.ResponseError(f"the vendor returned {len(vectors)} embeddings for {count} inputs",
                                   provider=provider, model=model)
    billed = getattr(getattr(resp, "meta", None), "billed_units", None)
    tokens = getattr(billed, "input_tokens", None)
    reported = Usage(input_tokens=int(tokens)) if isinstance(tokens, (int, float)) and tokens >= 0 else None
    return Vectors([list(v) for v in vectors], reported, model)
