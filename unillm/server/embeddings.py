"""``POST /v1/embeddings``: OpenAI's wire format over `Client.aembed`.

The body is OpenAI's (``model``, ``input``, ``dimensions``, ``encoding_format``, ``user``);
``input_type`` (Cohere) and ``task_type`` (Google) are accepted beside them (the openai SDK
sends them through ``extra_body``), ``metadata`` becomes extra tags (each allowed by
`tenancy.TagPolicy`), ``extra`` passes vendor parameters only for keys in ``[server]
allow_extra``, and anything else is a 400 naming it. Keys, tenancy, rate limits, budgets,
the cache, metrics and the ``x-unillm-*`` cost headers are the chat route's (`chat`, `Gateway`).
The openai SDK asks for ``encoding_format="base64"`` by default: vectors are then sent as
base64 of little-endian float32, whichever vendor made them.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .chat import _extra, _tags, read_json
from .wire import HTTPError, json_response, unillm_headers

#: body fields passed to Client.aembed under the same name
_PASSED = frozenset({"dimensions", "encoding_format", "user", "input_type", "task_type"})


def to_embed_call(body: Any, *, allow_extra: Collection[str] = ()
                  ) -> tuple[str, list[str], dict[str, Any], dict[str, str]]:
    """(model, input, params, caller tags) from an OpenAI embeddings body."""
    if not isinstance(body, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    body = dict(body)
    model = body.pop("model", None)
    if not isinstance(model, str) or not model:
        raise HTTPError(400, "you must provide a model parameter", param="model")
    raw = body.pop("input", None)
    texts = [raw] if isinstance(raw, str) else raw
    if not isinstance(texts, list) or not texts or not all(isinstance(t, str) for t in texts):
        raise HTTPError(400, "'input' must be a non-empty string or a list of strings (token arrays are "
                        "not accepted by this gateway: send text)", param="input")
    tags = _tags(body.pop("metadata", None))
    params: dict[str, Any] = {}
    extra = body.pop("extra", None)
    if extra is not None:
        params["extra"] = _extra(extra, allow_extra)
    for name, value in body.items():
        if name not in _PASSED:
            raise HTTPError(400, f"unrecognized request argument supplied: {name}",
                            code="unknown_parameter", param=name)
        if value is not None:
            params[name] = value
    return model, texts, params, tags


def embedding_body(resp: Any) -> dict[str, Any]:
    """An `EmbeddingResponse` as OpenAI's CreateEmbeddingResponse JSON."""
    n = resp.usage.prompt_tokens
    return {"object": "list", "model": resp.model, "usage": {"prompt_tokens": n, "total_tokens": n},
            "data": [{"object": "embedding", "index": d.index, "embedding": d.embedding} for d in resp.data]}


async def embeddings(request: Request) -> Response:
    gw = request.app.state.gateway
    key = gw.authenticate(request)
    model, texts, params, caller = to_embed_call(await read_json(request), allow_extra=gw.server.allow_extra)
    tags = gw.tag_policy.merge(caller, key)  # the key's tenancy is authoritative
    gw.check_model(model)
    await gw.admit(key)
    metrics = gw.metrics  # None unless [server.metrics] is enabled
    t0 = time.perf_counter() if metrics is not None else 0.0
    try:
        resp = await gw.client.aembed(model, texts, tags=tags, **params)
    except Exception as exc:
        if metrics is not None:
            metrics.failed(key, model, exc)
        raise
    gw.finished(key, resp)
    if metrics is not None:
        metrics.finished(key, resp, time.perf_counter() - t0)
    headers = {**unillm_headers(resp), "x-unillm-requests": str(resp.requests)}
    return json_response(embedding_body(resp), headers=headers)


__all__ = ["embedding_body", "embeddings", "to_embed_call"]
