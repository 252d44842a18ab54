"""Whose call is it: the tags a caller may add, and the ones only its key sets.

A gateway key's ``key_id``, ``user`` and ``project`` are authoritative. A caller
may add tags (``metadata`` on a chat body) only under the names the operator
lists in ``[server] allow_tags``; a *reserved* name is refused even when listed.
Reserved: ``user``, ``project``, ``key_id``, every tag name a configured budget
scopes on (else a caller could charge another scope's budget, or dodge its own),
and the client's default ``tags`` (the operator set those). A refusal is a 400
naming the tag; nothing is silently stripped, so a caller never believes a tag
was recorded when it was not.

`TagPolicy.problems` is the one check; `TagPolicy.merge` is what a chat route calls, and
usage ingest reports every problem of a record at once (a 422 per field).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from ..config import RESERVED_TAGS
from .wire import HTTPError

#: OpenAI's own bound on a metadata value; longer text is no tag
MAX_TAG_VALUE = 512


class TagPolicy:
    """The operator's tag rules for one gateway (``client`` gives the budgets in force)."""

    def __init__(self, allowed: Iterable[str], client: Any) -> None:
        self.allowed = frozenset(allowed)
        self.client = client

    def reserved(self) -> frozenset[str]:
        """Tag names no caller may set, computed now (budgets can be added at run time)."""
        names = set(RESERVED_TAGS)
        settings = getattr(self.client, "settings", None)
        names.update(getattr(settings, "tags", None) or {})
        for spec in self.client.budgets.specs:
            names.update(spec.scope)
        return frozenset(names)

    def refusal(self, tags: Mapping[str, Any]) -> tuple[str, str] | None:
        """``(tag name, why)`` for the first tag a caller may not set, or None when all may be."""
        found = self.problems(tags)
        return found[0] if found else None

    def problems(self, tags: Mapping[str, Any]) -> list[tuple[str, str]]:
        """``(tag name, why)`` for every tag a caller may not set, in name order."""
        if not tags:
            return []
        reserved = self.reserved()
        out = []
        for name in sorted(tags):
            value = tags[name]
            if name in reserved:
                out.append((name, (f"the tag {name!r} is reserved: it comes from the API key or the "
                                   "operator's configuration and cannot be set by a caller")))
            elif name not in self.allowed:
                allowed = ", ".join(sorted(self.allowed - reserved)) or "none"
                out.append((name, (f"the tag {name!r} is not allowed by this gateway "
                                   f"([server] allow_tags; allowed: {allowed})")))
            elif not isinstance(value, str) or len(value) > MAX_TAG_VALUE:
                out.append((name, f"the tag {name!r} must be a string of at most {MAX_TAG_VALUE} characters"))
        return out

    def merge(self, caller: Mapping[str, str], key: Any, *, field: str = "metadata") -> dict[str, str]:
        """The tags of a call: the caller's (each one allowed, else a 400) under the key's."""
        problem = self.refusal(caller)
        if problem is not None:
            name, why = problem
            raise HTTPError(400, why, code="tag_not_allowed", param=f"{field}.{name}")
        return {**caller, **key.tags()} if caller else key.tags()


__all__ = ["MAX_TAG_VALUE", "TagPolicy"]
