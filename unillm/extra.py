"""The contract of ``extra=``: vendor parameters pass, the call's identity does not.

``Client.chat(..., extra={...})`` hands vendor-specific parameters to the SDK call
(``logprobs``, ``thinking``, ``safety_settings``, ``documents`` ...). What ``extra``
may NOT do is change what is called, where, with whose credentials, or what a budget's
hold is an upper bound of: those keys are refused with `InvalidRequestError` naming the
key, before anything is sent. This table is the one place that says which keys those
are, read from each adapter's ``convert.py`` (where ``extra`` lands) and each SDK's
call signature:

* openai   ``chat.completions.create(**kwargs)``: request options ``extra_headers``,
  ``extra_query``, ``timeout``; unknown keys and ``extra_body`` merge into the JSON body.
* anthropic ``messages.create(**kwargs)``: the same request options, plus
  ``workspace_id`` / ``user_profile_id`` (sent as headers); ``extra_body`` merges.
* google   every key lands in ``GenerateContentConfig`` (``config`` merges into it):
  ``http_options`` (base URL, headers, API version), ``should_return_http_response``,
  ``automatic_function_calling`` (more HTTP calls per attempt), model routing.
* cohere   ``ClientV2.chat(**kwargs)``: ``request_options`` (headers, query, timeout,
  retries, body); unknown keys ride in ``additional_body_parameters``.

Keys are refused wherever they would land, so one table serves every protocol; the
containers that merge into the request (``extra_body``, ``config``) are checked key by
key with the same table. Everything else passes untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import errors

__all__ = ["NESTED", "RESERVED", "check_extra", "merge_extra"]

_CALL = "what is called is chat()'s to say"
_WHERE = "where the request goes and with which credentials is the provider's configuration"
_BUDGET = "budget holds are an upper bound of one answer of at most max_tokens"

#: extra key -> why it is refused (the error message says what to use instead)
RESERVED: Mapping[str, str] = {
    # what is called (every protocol)
    "model": f"{_CALL}: pass model=",
    "messages": f"{_CALL}: pass messages=",
    "contents": f"{_CALL}: pass messages=",                      # google's name for them
    "stream": f"{_CALL}: pass stream=",
    "stream_options": "unillm sets it to read the vendor's usage",  # openai
    "routing_config": f"{_CALL}: the vendor would pick the model",  # google
    "model_selection_config": f"{_CALL}: the vendor would pick the model",  # google
    "automatic_function_calling": "one attempt is one HTTP call; tools run in your code",  # google
    "automatic_continuation": "one attempt is one HTTP call",    # google
    "continuation_token": "one attempt is one HTTP call",        # google
    "should_return_http_response": "unillm reads the vendor's answer itself",  # google
    # where, and with whose credentials (SDK request options and client settings)
    "base_url": _WHERE, "api_base": _WHERE, "api_key": _WHERE, "api_version": _WHERE,
    "auth": _WHERE, "credentials": _WHERE, "organization": _WHERE, "project": _WHERE,
    "headers": _WHERE, "default_headers": _WHERE, "extra_headers": _WHERE,
    "query": _WHERE, "params": _WHERE, "default_query": _WHERE, "extra_query": _WHERE,
    "http_options": _WHERE,                                      # google
    "http_client": _WHERE, "httpx_client": _WHERE,
    "request_options": _WHERE,                                   # cohere
    "workspace_id": _WHERE, "user_profile_id": _WHERE,           # anthropic (sent as headers)
    # the cloud clients' own settings (azure, bedrock, vertex): never a request's to choose
    "deployment": _WHERE, "azure_deployment": _WHERE, "azure_endpoint": _WHERE, "region": _WHERE,
    "aws_region": _WHERE, "location": _WHERE, "project_id": _WHERE, "access_token": _WHERE,
    "anthropic_version": _WHERE,
    "timeout": "the transport's timeout is the provider's configuration (providers.NAME.timeout)",
    "max_retries": "retries are the provider's configuration (providers.NAME.max_retries)",
    # what a budget's hold covers
    "max_tokens": f"{_BUDGET}: pass max_tokens=",
    "max_completion_tokens": f"{_BUDGET}: pass max_tokens=",     # openai
    "max_output_tokens": f"{_BUDGET}: pass max_tokens=",         # google
    "n": f"{_BUDGET} (one choice)",                              # openai
    "candidate_count": f"{_BUDGET} (one choice)",                # google
}

#: extra keys whose mapping merges into the request: checked key by key
NESTED = frozenset({"extra_body", "config"})


def _norm(key: str) -> str:
    """google-genai also takes camelCase (``httpOptions``): compare spelling-blind."""
    return key.replace("_", "").replace("-", "").lower()


_BY_NORM = {_norm(k): why for k, why in RESERVED.items()}
_NESTED_NORM = frozenset(_norm(k) for k in NESTED)


def check_extra(extra: Any) -> None:
    """Raise `InvalidRequestError` naming the first reserved key of ``extra`` (or of a
    container in it that merges into the request)."""
    if not isinstance(extra, Mapping):
        return  # the type itself is pydantic's to reject
    for key, value in extra.items():
        _check(key, f"extra.{key}")
        if isinstance(key, str) and _norm(key) in _NESTED_NORM and isinstance(value, Mapping):
            for inner in value:
                _check(inner, f"extra.{key}.{inner}")


def _check(key: Any, where: str) -> None:
    why = _BY_NORM.get(_norm(key)) if isinstance(key, str) else None
    if why is not None:
        raise errors.InvalidRequestError(f"{where} is not allowed in extra: {why}", param=where)


def merge_extra(extra: Mapping[str, Any], sdk_kwargs: frozenset[str] | set[str],
                kwargs: dict[str, Any]) -> None:
    """``extra`` (already checked) into an SDK call's ``kwargs``: the SDK's own keyword
    arguments pass as such (and win); every other key, and ``extra_body``'s, rides in
    ``extra_body``, never a TypeError from the SDK (the openai and anthropic SDKs)."""
    body: dict[str, Any] = {}
    for key, value in extra.items():
        if key == "extra_body" and isinstance(value, Mapping):
            body.update(value)
        elif key in sdk_kwargs:
            kwargs[key] = value
        else:
            body[key] = value
    if body:
        kwargs["extra_body"] = body
