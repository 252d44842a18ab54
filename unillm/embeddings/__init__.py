"""Embeddings: `Client.embed` / `aembed` (`pipeline`) and their data (`types`)."""

from .types import Embedding, EmbeddingResponse, EmbedRequest

__all__ = ["EmbedRequest", "Embedding", "EmbeddingResponse"]
