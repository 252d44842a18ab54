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
    "track": "unillm.tracking",
}
_ERRORS = "unillm.errors"

if TYPE_CHECKING:  # for type checkers and IDEs; at run time __getattr__ loads these lazily
    from .client import Client  # noqa: F401
    from .errors import *  # noqa: F403
    from .types import ChatResponse, Cost, StreamChunk, Usage  # noqa: F401


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
