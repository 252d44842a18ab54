"""unillm: one client for many LLM vendors that knows what every call cost.

``import unillm`` is cheap: no SDK, no tokenizer and no database is loaded until a
call needs it. Public names are resolved lazily on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "Client": "unillm.client",
    "ChatStream": "unillm.streaming",
    "AsyncChatStream": "unillm.streaming",
    "ChatResponse": "unillm.types",
    "StreamChunk": "unillm.types",
    "Usage": "unillm.types",
    "Cost": "unillm.types",
    "EmbeddingResponse": "unillm.embeddings.types",
    "track": "unillm.tracking",
    "observe": "unillm.metering",
    "register_extractor": "unillm.metering.extractors",
}
_ERRORS = "unillm.errors"

#: the public names: `_LAZY`'s and `unillm.errors.__all__` (tests/test_public_api.py keeps
#: the three lists equal); spelled out so that type checkers and ``from unillm import *`` see them
__all__ = [
    "AsyncChatStream", "ChatResponse", "ChatStream", "Client", "Cost", "EmbeddingResponse", "StreamChunk",
    "Usage", "observe", "register_extractor", "track",
    # unillm.errors
    "UnillmError", "ConfigError", "InvalidRequestError", "UnsupportedParamError", "UnknownModelError",
    "UnsupportedPartError", "MissingDependencyError", "MissingPriceError", "BudgetExceededError", "RuleDeniedError", "LedgerError",
    "ProviderError", "AuthenticationError", "PermissionDeniedError", "NotFoundError", "BadRequestError",
    "ContextWindowExceededError", "RateLimitError", "ServerError", "TimeoutError", "ConnectionError",
    "ResponseError", "UsageError", "did_you_mean",
]

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ loads these lazily
    from .client import Client
    from .embeddings.types import EmbeddingResponse
    from .errors import (
        AuthenticationError,
        BadRequestError,
        BudgetExceededError,
        ConfigError,
        ConnectionError,  # noqa: A004 - deliberate, namespaced under unillm
        ContextWindowExceededError,
        InvalidRequestError,
        LedgerError,
        MissingDependencyError,
        MissingPriceError,
        NotFoundError,
        PermissionDeniedError,
        ProviderError,
        RateLimitError,
        ResponseError,
        RuleDeniedError,
        ServerError,
        TimeoutError,  # noqa: A004 - deliberate, namespaced under unillm
        UnillmError,
        UnknownModelError,
        UnsupportedParamError,
        UnsupportedPartError,
        UsageError,
        did_you_mean,
    )
    from .metering import observe
    from .metering.extractors import register_extractor
    from .streaming import AsyncChatStream, ChatStream
    from .tracking import track
    from .types import ChatResponse, Cost, StreamChunk, Usage


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        errors = importlib.import_module(_ERRORS)
        if name in errors.__all__:
            return getattr(errors, name)
        raise AttributeError(f"module 'unillm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(importlib.import_module(_ERRORS).__all__))
