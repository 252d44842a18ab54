"""Usage extractors for response shapes unillm does not know.

::

    def perplexity_search(exchange) -> Extracted | None:
        if exchange.path != "/search":
            return None
        return Extracted(provider="perplexity", model="search", units={"calls": 1})

    unillm.register_extractor("perplexity-search", perplexity_search)

An extractor gets every `Exchange` (method, url, host, path, headers, request and response
bodies) that no ``[[apis]]`` entry and no vendor converter priced, and returns what it read,
or None. A package registers one through the entry-point group ``unillm.extractors`` (the
entry's value is the function). What an extractor returns is priced like everything else:
user price file, then the bundled book, then ``on_missing_price`` (never a silent $0).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import metadata

from .apis import Exchange

GROUP = "unillm.extractors"


@dataclass(frozen=True)
class Extracted:
    """Usage an extractor read from one exchange."""

    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    units: Mapping[str, Decimal | int] = field(default_factory=dict)


Extractor = Callable[[Exchange], Extracted | None]
_REGISTERED: dict[str, Extractor] = {}
_LOADED: list[bool] = [False]


def register_extractor(name: str, fn: Extractor) -> Extractor:
    """Add (or replace) the extractor called ``name``; returns ``fn``."""
    if not isinstance(name, str) or not name.strip() or not callable(fn):
        raise TypeError("register_extractor(name, fn): a non-empty name and a callable")
    _REGISTERED[name] = fn
    return fn


def unregister_extractor(name: str) -> None:
    _REGISTERED.pop(name, None)


def extractors() -> list[tuple[str, Extractor]]:
    """Every extractor: the entry points' (loaded once), then those registered in code."""
    if not _LOADED[0]:
        _LOADED[0] = True
        for ep in metadata.entry_points(group=GROUP):
            _REGISTERED.setdefault(ep.name, ep.load())
    return list(_REGISTERED.items())


def extract(exchange: Exchange) -> tuple[str, Extracted] | None:
    """The first extractor's reading of ``exchange``; an extractor that raises is skipped."""
    import logging
    for name, fn in extractors():
        try:
            got = fn(exchange)
        except Exception:
            logging.getLogger("unillm.observe").exception("extractor %r failed", name)
            continue
        if got is not None:
            return name, got
    return None


def has_any() -> bool:
    return bool(extractors())


