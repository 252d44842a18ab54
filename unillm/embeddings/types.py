"""Embedding requests in, OpenAI-shaped embedding responses out.

`EmbedRequest` is validated once, before anything is sent (`build_embed_request`);
`EmbeddingResponse` keeps OpenAI's shape (``data[i].embedding``, ``usage.prompt_tokens``)
and adds what unillm knows: ``cost``, ``provider``, ``cached``, ``ledger_id`` (and
``ledger_ids``: one row per vendor request when the input was sent in batches).
Vectors are built without per-float validation (``model_construct``): they come from
the vendor's JSON or the cache, already numbers.
"""

from __future__ import annotations

import base64
import struct
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .. import errors
from ..types import Cost, Usage, describe_errors

#: Cohere's input types (v2 embed); Google's task types map from them where they agree
InputType = Literal["search_document", "search_query", "classification", "clustering"]
#: Google's task types (``EmbedContentConfig.task_type``)
TaskType = Literal["RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY", "CLASSIFICATION",
                   "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY"]
EncodingFormat = Literal["float", "base64"]

#: the keyword arguments `Client.embed` takes besides model and input
EMBED_PARAMS = frozenset({"dimensions", "input_type", "task_type", "encoding_format", "user", "extra"})


class EmbedRequest(BaseModel):
    """A validated embedding request, vendor-neutral; adapters turn it into SDK calls."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    model: str
    input: list[str] = Field(min_length=1)
    dimensions: int | None = Field(default=None, gt=0)
    input_type: InputType | None = None
    task_type: TaskType | None = None
    #: how ``data[i].embedding`` is returned: a list of floats, or OpenAI's base64 of float32
    encoding_format: EncodingFormat = "float"
    user: str | None = None
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("input")
    @classmethod
    def _no_empty(cls, v: list[str]) -> list[str]:
        for i, text in enumerate(v):
            if not text:
                raise ValueError(f"input[{i}] is empty; every input must be a non-empty string")
        return v

    # what the shared pipeline (calls.Call, record_for, the cache policy) reads of a request:
    # no output cap, nothing to parse, and never sampled (the same input, the same vector)
    max_tokens: ClassVar[None] = None
    response_model: ClassVar[None] = None
    temperature: ClassVar[int] = 0

    @property
    def dropped(self) -> tuple[str, ...]:
        return ()

    def retargeted(self, model: str) -> EmbedRequest:
        return self.model_copy(update={"model": model})

    def batch(self, start: int, stop: int) -> EmbedRequest:
        """The same request for ``input[start:stop]`` (one vendor request of a batched call)."""
        return self.model_copy(update={"input": self.input[start:stop]})

    def prompt_text(self) -> str:
        return "\n".join(self.input)


def build_embed_request(model: str, input: Any, params: dict[str, Any]) -> EmbedRequest:  # noqa: A002 - OpenAI's name
    """``client.embed``'s arguments as an `EmbedRequest`, or one `InvalidRequestError` naming
    the parameter and what is valid."""
    unknown = sorted(set(params) - EMBED_PARAMS)
    if unknown:
        close = errors.did_you_mean(unknown[0], sorted(EMBED_PARAMS))
        hint = f"; did you mean {close[0]!r}?" if close else f"; embed takes {', '.join(sorted(EMBED_PARAMS))}"
        raise errors.InvalidRequestError(f"embed() got an unknown parameter {unknown[0]!r}{hint}",
                                         param=unknown[0])
    if isinstance(input, str):
        input = [input]  # noqa: A001
    elif isinstance(input, (list, tuple)):
        input = list(input)  # noqa: A001
    else:
        raise errors.InvalidRequestError(
            f"input must be a string or a list of strings, not {type(input).__name__}", param="input")
    bad = next((i for i, v in enumerate(input) if not isinstance(v, str)), None)
    if bad is not None:
        raise errors.InvalidRequestError(
            f"input[{bad}] must be a string, not {type(input[bad]).__name__} (token arrays are not "
            "accepted: send text)", param="input")
    _check_extra(params.get("extra"))
    try:
        return EmbedRequest(model=model, input=input, **{k: v for k, v in params.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        param = str(first["loc"][0]) if first.get("loc") else None
        raise errors.InvalidRequestError(describe_errors(exc), param=param) from None


#: extra keys an embedding call refuses beside chat's (`unillm.extra.RESERVED`): what is embedded,
#: and the options that have their own typed parameter (the vectors must be read as sent)
_RESERVED = {"input": "pass input=", "texts": "pass input=", "inputs": "pass input=",
             "images": "unillm embeds text", "requests": "pass input=",
             "embedding_types": "unillm reads float vectors; pass encoding_format=",
             "encoding_format": "pass encoding_format=", "input_type": "pass input_type=",
             "task_type": "pass task_type=", "dimensions": "pass dimensions=",
             "output_dimension": "pass dimensions=", "output_dimensionality": "pass dimensions="}


def _check_extra(extra: Any) -> None:
    """``extra`` passes vendor parameters; it may not change what is embedded, where, with
    whose key, or how the answer is read (`unillm.extra.check_extra`, and `_RESERVED`)."""
    from ..extra import NESTED, check_extra
    check_extra(extra)
    if not isinstance(extra, dict):
        return
    for key, value in extra.items():
        inner = value if key in NESTED and isinstance(value, dict) else {}
        for name, where in ((key, f"extra.{key}"), *((k, f"extra.{key}.{k}") for k in inner)):
            if isinstance(name, str) and name in _RESERVED:
                raise errors.InvalidRequestError(f"{where} is not allowed in extra: {_RESERVED[name]}",
                                                 param=where)


def unsupported(provider: str, param: str, hint: str) -> errors.UnsupportedParamError:
    """``provider`` has no such embedding option: the error names the option, the vendor and
    what it does take (embedding options are never dropped: a vector made without the asked
    ``input_type`` would be silently worse)."""
    err = errors.UnsupportedParamError(provider, param, hint)
    err.args = (f"{provider} does not support the embedding parameter {param!r} ({hint})",)
    return err


class Embedding(BaseModel):
    """One vector, as OpenAI's ``data[i]``."""

    model_config = ConfigDict(defer_build=True)

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str   # a str under encoding_format="base64"


class EmbeddingResponse(BaseModel):
    """OpenAI's ``CreateEmbeddingResponse`` plus what unillm knows about the call."""

    model_config = ConfigDict(defer_build=True)

    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: Usage
    provider: str
    cost: Cost | None = None
    cached: bool = False
    rule: str | None = None
    requested_model: str | None = None
    #: the ledger row of the call (its first, when it was sent in several vendor requests)
    ledger_id: str | None = None
    #: every row of the call, one per vendor request (or per cache hit), in input order
    ledger_ids: list[str] = Field(default_factory=list)
    #: how many vendor requests the call took (0: all from the cache)
    requests: int = 0
    cache_status: str | None = None

    @property
    def vectors(self) -> list[list[float]]:
        """``[d.embedding for d in data]`` as floats (decoded when base64)."""
        return [decode_base64(d.embedding) if isinstance(d.embedding, str) else d.embedding for d in self.data]


def encode_base64(vector: list[float]) -> str:
    """OpenAI's ``encoding_format="base64"``: little-endian float32, base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def decode_base64(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def make_data(vectors: list[list[float]], encoding_format: str) -> list[Embedding]:
    """``data`` for ``vectors`` (built unvalidated: they are numbers already)."""
    if encoding_format == "base64":
        return [Embedding.model_construct(object="embedding", index=i, embedding=encode_base64(v))
                for i, v in enumerate(vectors)]
    return [Embedding.model_construct(object="embedding", index=i, embedding=v) for i, v in enumerate(vectors)]


class Vectors:
    """What an adapter's ``embed`` returns for one vendor request: the vectors in input order,
    the vendor's usage (None when it reported none) and the model it named."""

    __slots__ = ("model", "usage", "vectors")

    def __init__(self, vectors: list[list[float]], usage: Usage | None, model: str) -> None:
        self.vectors, self.usage, self.model = vectors, usage, model
