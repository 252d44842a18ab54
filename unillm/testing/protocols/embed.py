"""FakeProvider: the vendors' embeddings endpoints.

* OpenAI (and OpenAI-compatible): ``POST /v1/embeddings``; ``data[i].embedding`` as floats,
  or base64 of little-endian float32 under ``encoding_format: "base64"`` (what the openai SDK
  asks by default); ``usage.prompt_tokens`` is the inputs' cl100k_base count.
* Google: ``POST /{version}/models/{model}:batchEmbedContents`` (google-genai's
  ``embed_content``); ``{"embeddings": [{"values": [...]}]}``, with no token count, as the
  Gemini Developer API answers (a ``Reply(usage={...})`` adds ``usageMetadata``).
* Cohere: ``POST /v2/embed``; ``embeddings.float`` and ``meta.billed_units.input_tokens``.

Vectors are deterministic: a hash of (model, text), ``dimensions`` long (8 by default), each
value a multiple of 1/128 so that float32 and JSON carry it exactly. `fake_vector` gives the
vector a test should expect. ``Reply(usage=None)`` reports no usage; ``Reply(usage={"input_tokens":
n})`` reports ``n``; ``Reply(model=...)`` names another model.
"""

from __future__ import annotations

import base64
import hashlib
import re
import struct
from collections.abc import Iterable
from typing import Any

from ..replies import AUTO, Ctx, Reply
from .base import Protocol
from .cohere import CohereProtocol
from .google import GoogleProtocol
from .openai import OpenAIProtocol

DEFAULT_DIMENSIONS = 8


def fake_vector(model: str, text: str, dimensions: int | None = None) -> list[float]:
    """The vector FakeProvider answers for ``text`` embedded by ``model``."""
    n = dimensions or DEFAULT_DIMENSIONS
    out: list[float] = []
    counter = 0
    while len(out) < n:
        digest = hashlib.sha256(f"{model}|{counter}|{text}".encode()).digest()
        out.extend((b - 128) / 128 for b in digest)
        counter += 1
    return out[:n]


def fake_tokens(texts: Iterable[str]) -> int:
    """The token count FakeProvider reports: cl100k_base (tiktoken), else ~4 characters a token."""
    from ...tokens import count_text
    total = 0
    for text in texts:
        n = count_text(text, "cl100k_base")
        total += n if n is not None else max(len(text) // 4, 1)
    return total


def _reported(reply: Reply, texts: list[str]) -> int | None:
    if reply.usage is None:
        return None
    if reply.usage == AUTO:
        return fake_tokens(texts)
    return int(reply.usage.get("input_tokens", 0)) if isinstance(reply.usage, dict) else None


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [v if isinstance(v, str) else str(v) for v in value] if isinstance(value, list) else []


class EmbedProtocol(Protocol):
    """A vendor's embeddings endpoint: never streamed; its errors are its chat protocol's
    (``chat``): the same body for the same status."""

    chat: type[Protocol] = Protocol

    def is_stream(self, path: str, query: str, body: Any) -> bool:
        return False

    def render_stream(self, reply: Reply, ctx: Ctx) -> Iterable[Any]:
        return ()

    def render_error(self, reply: Reply, ctx: Ctx) -> Any:
        return self.chat().render_error(reply, ctx)


class OpenAIEmbedProtocol(EmbedProtocol):
    name = "openai"
    chat = OpenAIProtocol
    base_path = "/v1"
    route = re.compile(r"^(/v1)?/embeddings/?$")

    def render(self, reply: Reply, ctx: Ctx) -> Any:
        body = ctx.body if isinstance(ctx.body, dict) else {}
        texts = _texts(body.get("input"))
        dims = body.get("dimensions") or body.get("output_dimension")
        b64 = body.get("encoding_format") == "base64"
        data = []
        for i, text in enumerate(texts):
            vec = fake_vector(ctx.model, text, dims)
            value: Any = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode() if b64 else vec
            data.append({"object": "embedding", "index": i, "embedding": value})
        out: dict[str, Any] = {"object": "list", "data": data, "model": reply.model or ctx.model}
        tokens = _reported(reply, texts)
        if tokens is not None:
            out["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
        return out


class GoogleEmbedProtocol(EmbedProtocol):
    name = "google"
    chat = GoogleProtocol
    route = re.compile(r"^/(v1\w*)/((?:models|tunedModels)/[^/:]+):(batchEmbedContents)$")
    model = GoogleProtocol.model   # the same resource group: models/{model} or tunedModels/{model}

    def render(self, reply: Reply, ctx: Ctx) -> Any:
        requests = ctx.body.get("requests", []) if isinstance(ctx.body, dict) else []
        texts, embeddings = [], []
        for r in requests:
            parts = (r.get("content") or {}).get("parts") or []
            text = "".join(p.get("text", "") for p in parts if isinstance(p, dict))
            texts.append(text)
            embeddings.append({"values": fake_vector(ctx.model, text, r.get("outputDimensionality"))})
        out: dict[str, Any] = {"embeddings": embeddings}
        if isinstance(reply.usage, dict):
            n = int(reply.usage.get("input_tokens", 0))
            out["usageMetadata"] = {"promptTokenCount": n, "totalTokenCount": n}
        return out


class CohereEmbedProtocol(EmbedProtocol):
    name = "cohere"
    chat = CohereProtocol
    route = re.compile(r"^.*/v2/embed/*$")

    def render(self, reply: Reply, ctx: Ctx) -> Any:
        body = ctx.body if isinstance(ctx.body, dict) else {}
        texts = _texts(body.get("texts"))
        vectors = [fake_vector(ctx.model, t, body.get("output_dimension")) for t in texts]
        out: dict[str, Any] = {"id": f"fake-embed-{ctx.seq}", "embeddings": {"float": vectors}, "texts": texts,
                               "response_type": "embeddings_by_type", "meta": {"api_version": {"version": "2"}}}
        tokens = _reported(reply, texts)
        if tokens is not None:
            out["meta"]["billed_units"] = {"input_tokens": tokens}
        return out


#: served after every chat protocol (their paths never overlap)
EMBED_PROTOCOLS = (OpenAIEmbedProtocol, GoogleEmbedProtocol, CohereEmbedProtocol)
