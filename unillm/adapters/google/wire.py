"""Gemini generateContent (and its stream) through google-genai's own API client, without its request models.

Why a private seam: ``models.generate_content`` validates our kwargs into its pydantic
models and then converts them to the wire by looking every one of its ~60 config fields up
by path, iterating the model for each (measured on google-genai 3.6: ~900 of its ~1,300 µs
per call, with ``should_return_http_response`` already skipping the answer's models); no
public option skips that. ``Client._api_client.request`` is what ``generate_content`` itself
calls next: it still adds the SDK's auth (``x-goog-api-key``), base URL, API version,
timeout and per-request ``http_options``, sends, checks the status and raises the SDK's
typed errors (``errors.APIError.raise_for_response``). Streams go through its
``request_streamed`` / ``async_request_streamed``, which ``generate_content_stream`` calls the
same way; they also raise an ``{"error": ...}`` event inside a 200 stream as the SDK's
APIError, and skip the SDK's response model per chunk (measured: 1.27x the raw SDK's stream
per chunk through the public path, 0.30x through the seam).

We send the JSON the SDK itself sends for the requests our converter builds, its mixed
spelling included (camelCase at the top, the nested dicts' snake_case kept, as Gemini's
proto JSON accepts both); `body` knows each key it maps; a request with anything else (a config key from ``extra``,
Vertex AI) returns None and takes the public path. Guarded: only on the google-genai majors
in `TESTED` and when the seam has the shape read here; tests/adapters/test_google_wire.py
checks the bodies against the SDK's own and fails loudly when the seam is gone.
"""

from __future__ import annotations

import base64
import inspect
from typing import Any

#: google-genai majors this seam was read and tested against
TESTED = frozenset({3})
_PARAMS = ("http_method", "path", "request_dict", "http_options")

# generate_content config keys -> the wire's generationConfig keys (values sent as they are)
_GENERATION = {
    "temperature": "temperature", "top_p": "topP", "top_k": "topK", "seed": "seed",
    "max_output_tokens": "maxOutputTokens", "stop_sequences": "stopSequences",
    "presence_penalty": "presencePenalty", "frequency_penalty": "frequencyPenalty",
    "response_mime_type": "responseMimeType", "response_json_schema": "responseJsonSchema",
}
# the ones the SDK's config types as float (it sends ``top_k=5`` as 5.0)
_FLOATS = frozenset({"temperature", "top_p", "top_k", "presence_penalty", "frequency_penalty"})
# config keys that stay on the SDK's side (one attempt per call either way)
_SDK_ONLY = frozenset({"automatic_continuation", "automatic_function_calling", "http_options",
                       "should_return_http_response"})
_TOP = frozenset({"system_instruction", "tools", "tool_config", "thinking_config"})


def seam(client: Any) -> Any | None:
    """``client``'s API client (a ``genai.Client``, or its ``.aio``), or None when this
    google-genai lacks it in the shape read here, or talks to Vertex AI."""
    from google import genai
    major = str(getattr(genai, "__version__", "")).split(".")[0]
    if not (major.isdigit() and int(major) in TESTED):
        return None
    api = getattr(client, "_api_client", None)
    if api is None or getattr(api, "vertexai", True):  # None or False: the Developer API
        return None
    for name in ("request", "async_request", "request_streamed", "async_request_streamed"):
        try:
            if tuple(inspect.signature(getattr(api, name)).parameters)[:4] != _PARAMS:
                return None
        except (AttributeError, TypeError, ValueError):
            return None
    return api


def path(model: str, *, stream: bool = False) -> str:
    """The generateContent (``stream``: streamGenerateContent as SSE) path of ``model``, as the
    SDK names Developer API models."""
    name = model if model.startswith(("models/", "tunedModels/")) else f"models/{model}"
    return f"{name}:streamGenerateContent?alt=sse" if stream else f"{name}:generateContent"


def body(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """The wire JSON of ``generate_content`` kwargs built by `convert.to_request`, or None when
    they hold a key this module does not map (then the SDK converts them)."""
    config: dict[str, Any] = kwargs["config"]
    if any(k not in _GENERATION and k not in _SDK_ONLY and k not in _TOP for k in config):
        return None
    try:
        out: dict[str, Any] = {"contents": [_content(c) for c in kwargs["contents"]]}
        if "system_instruction" in config:
            out["systemInstruction"] = _content(config["system_instruction"])
        if "tools" in config:
            out["tools"] = [_tool(t) for t in config["tools"]]
        if "tool_config" in config:
            out["toolConfig"] = _tool_config(config["tool_config"])
    except _UnmappedError:
        return None
    generation = {_GENERATION[k]: float(v) if k in _FLOATS else v
                  for k, v in config.items() if k in _GENERATION}
    if "thinking_config" in config:
        thinking = config["thinking_config"]
        if set(thinking) != {"thinking_level"}:
            return None
        generation["thinkingConfig"] = dict(thinking)
    out["generationConfig"] = generation
    return out


class _UnmappedError(Exception):
    """A key `body` does not map: the SDK converts this request."""


def _only(d: dict[str, Any], keys: frozenset[str]) -> dict[str, Any]:
    if not set(d) <= keys:
        raise _UnmappedError
    return d


_CONTENT_KEYS = frozenset({"role", "parts"})
_CALL_KEYS = frozenset({"name", "args", "id"})
_RESPONSE_KEYS = frozenset({"name", "response", "id"})


def _content(content: dict[str, Any]) -> dict[str, Any]:
    _only(content, _CONTENT_KEYS)
    out: dict[str, Any] = {"parts": [_part(p) for p in content["parts"]]}
    if "role" in content:
        out["role"] = content["role"]
    return out


def _part(part: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in part.items():
        if key == "text":
            out["text"] = value
        elif key == "inline_data":
            data = value["data"]
            out["inlineData"] = {"data": _b64(data), "mime_type": value["mime_type"]}
        elif key == "file_data":
            out["fileData"] = {"file_uri": value["file_uri"], "mime_type": value["mime_type"]}
        elif key == "function_call":
            out["functionCall"] = dict(_only(value, _CALL_KEYS))
        elif key == "function_response":
            out["functionResponse"] = dict(_only(value, _RESPONSE_KEYS))
        elif key == "thought_signature":
            out["thoughtSignature"] = _b64(value)
        else:
            raise _UnmappedError
    return out


def _b64(data: Any) -> str:
    """Bytes as the SDK sends them (base64); a str is taken as already encoded."""
    if isinstance(data, (bytes, bytearray)):
        return base64.b64encode(data).decode()
    if isinstance(data, str):
        return data
    raise _UnmappedError


_DECL_KEYS = frozenset({"name", "description", "parameters_json_schema"})


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    if set(tool) != {"function_declarations"}:
        raise _UnmappedError
    decls = []
    for decl in tool["function_declarations"]:
        decls.append(dict(_only(decl, _DECL_KEYS)))
    return {"functionDeclarations": decls}


def _tool_config(config: dict[str, Any]) -> dict[str, Any]:
    if set(config) != {"function_calling_config"}:
        raise _UnmappedError
    fcc = config["function_calling_config"]
    names = {"mode": "mode", "allowed_function_names": "allowedFunctionNames"}
    if not set(fcc) <= set(names):
        raise _UnmappedError
    return {"functionCallingConfig": {names[k]: v for k, v in fcc.items()}}
