"""Sections: label every call made inside a ``with`` block, nested as a path.

    with client.section("agent:research"):
        with client.section("llm:query"):
            client.chat(...)        # recorded with section "agent:research/llm:query"

Backed by a ContextVar, so threads and asyncio tasks each see their own path.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

_PATH: ContextVar[str | None] = ContextVar("unillm_section", default=None)


def current() -> str | None:
    """The section path in force here, or None."""
    return _PATH.get()


class Section:
    """A reusable context manager (sync and async) that pushes ``name`` onto the path."""

    __slots__ = ("name", "_tokens")

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip() or "/" in name:
            raise ValueError(f"section name must be a non-empty string without '/': {name!r}")
        self.name = name
        self._tokens: list[Token[str | None]] = []

    def __enter__(self) -> str:
        parent = _PATH.get()
        path = f"{parent}/{self.name}" if parent else self.name
        self._tokens.append(_PATH.set(path))
        return path

    def __exit__(self, *exc: object) -> None:
        _PATH.reset(self._tokens.pop())

    async def __aenter__(self) -> str:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()
