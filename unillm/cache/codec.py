"""Cache entries as data: JSON bytes in, JSON bytes out, never pickle.

A `CachedEntry` is the stored answer: the `ChatResponse` (stripped of what belongs
to one call: cost, ledger id, rule, ...), the stream chunks when it came from a
stream, the original call's cost (for ``saved``), and where it came from.

`decode` trusts nothing: truncated bytes, someone else's data or an entry written
by another schema version all raise `CorruptEntry`; backends turn that into a miss
and delete the entry.

Replay works both ways: `replay_chunks` serves a stream (the stored chunks, or
chunks synthesized from a non-stream response) and ``entry.response`` serves a
non-stream call (it is stored for streams too).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from .. import errors
from ..types import (
    ChatResponse,
    ChunkChoice,
    Cost,
    Delta,
    FinishReason,
    StreamChunk,
    ToolCallDelta,
    Usage,
)

__all__ = ["ENTRY_SCHEMA_VERSION", "FORMAT", "HIT_COST", "CachedEntry", "CorruptEntry", "encode", "decode",
           "make_entry", "served", "replay_chunks", "chunks_from_response", "response_from_chunks",
           "is_storable"]

FORMAT: Literal["unillm.cache"] = "unillm.cache"
ENTRY_SCHEMA_VERSION: Literal[1] = 1

# fields of a ChatResponse that describe one call, not the answer
_PER_CALL = {"cost": None, "cached": False, "rule": None, "requested_model": None, "ledger_id": None,
             "cache_status": None, "dropped_params": ()}
_USAGE_DERIVED = {"prompt_tokens", "completion_tokens", "total_tokens", "prompt_tokens_details",
                  "completion_tokens_details"}
_EXCLUDE: dict[str, Any] = {  # pydantic's ``exclude`` spec
    "response": {"usage": _USAGE_DERIVED, "cost": {"total_usd"}},
    "chunks": {"__all__": {"usage": _USAGE_DERIVED}},
}
#: the cost of every hit: nothing (frozen, so one object serves them all)
HIT_COST = Cost(price_version="cache hit")
# an answer worth serving again; "error" and "content_filter" are not
_STORABLE_FINISH = frozenset({None, "stop", "length", "tool_calls"})


class CorruptEntry(errors.UnillmError, ValueError):  # noqa: N818 - a cache miss, reported as such
    """Stored bytes that are not a readable entry of this schema version."""


class CachedEntry(BaseModel):
    """One stored answer. ``cost_usd`` is what the original call cost (None when unpriced)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    format: Literal["unillm.cache"]   # required: data without it is not ours
    v: Literal[1]                     # ENTRY_SCHEMA_VERSION; bump it when this shape changes
    namespace: str
    provider: str
    model: str
    created_at: datetime
    cost_usd: Decimal | None = None
    response: ChatResponse
    chunks: list[StreamChunk] | None = None
    #: an embeddings entry (`unillm.embeddings`): the vectors, in input order; ``response``
    #: then holds only the usage and the model (its ``choices`` are empty)
    vectors: list[list[float]] | None = None


def make_entry(response: ChatResponse, *, chunks: list[StreamChunk] | None = None,
               cost_usd: Decimal | None = None, namespace: str = "default",
               created_at: datetime | None = None) -> CachedEntry:
    """An entry for ``response`` (and the chunks it was streamed as), per-call fields cleared."""
    if cost_usd is None and response.cost is not None:
        cost_usd = response.cost.total_usd
    if cost_usd is not None and not isinstance(cost_usd, Decimal):
        raise TypeError(f"cost_usd must be a Decimal, not {type(cost_usd).__name__}")
    return CachedEntry(
        format=FORMAT, v=ENTRY_SCHEMA_VERSION, namespace=namespace,
        provider=response.provider, model=response.model,
        created_at=created_at or datetime.now(timezone.utc), cost_usd=cost_usd,
        response=response.model_copy(update=_PER_CALL),
        chunks=list(chunks) if chunks is not None else None)


def encode(entry: CachedEntry) -> bytes:
    """UTF-8 JSON; Usage's derived fields are left out (they are rebuilt on load), and so is
    every field at its default (half the bytes, a fifth less to validate on every hit)."""
    return entry.model_dump_json(exclude=_EXCLUDE, exclude_defaults=True).encode("utf-8")


def decode(data: bytes | bytearray | str) -> CachedEntry:
    """Bytes -> `CachedEntry`, or `CorruptEntry` saying what is wrong with them."""
    try:
        return CachedEntry.model_validate_json(data)
    except ValidationError as exc:
        raise CorruptEntry(_why(data, exc)) from None
    except (TypeError, ValueError, UnicodeError) as exc:
        raise CorruptEntry(f"unreadable cache entry: {type(exc).__name__}") from None


def decode_or_evict(data: bytes | bytearray | str, evict: Callable[[], Any]) -> CachedEntry | None:
    """The entry in ``data``, or None once ``evict()`` has removed it: a corrupt, truncated
    or foreign entry is a miss, never an error (every backend's ``get`` ends here)."""
    try:
        return decode(data)
    except CorruptEntry:
        evict()
        return None


def _why(data: Any, exc: ValidationError) -> str:
    """A short reason: not JSON (truncated), not ours (foreign), or another schema version."""
    problems = exc.errors()
    if any(p.get("type", "").startswith("json") for p in problems):
        return "cache entry is not valid JSON (truncated?)"
    by_loc = {tuple(p.get("loc") or ()): p for p in problems}
    if ("format",) in by_loc or (problems and not problems[0].get("loc")):
        return "not a unillm cache entry (foreign data)"
    if ("v",) in by_loc:
        return (f"cache entry has schema version {by_loc[('v',)].get('input')!r}, "
                f"expected {ENTRY_SCHEMA_VERSION}")
    first: dict[str, Any] = dict(problems[0]) if problems else {}
    where = ".".join(map(str, first.get("loc") or ("?",)))
    return f"cache entry does not match the schema at {where}: {first.get('msg', '')}"


# ── replay ───────────────────────────────────────────────────────────────────

def served(entry: CachedEntry, update: dict[str, Any]) -> ChatResponse:
    """``entry.response`` with ``update`` applied, as ``model_copy(update=...)`` applies it
    (no validation), but in place: every backend's ``get`` decodes a fresh entry, so its
    response is the one hit's own and copying it again would only cost time."""
    resp = entry.response
    resp.__dict__.update(update)
    resp.__pydantic_fields_set__.update(update)
    return resp


def replay_chunks(entry: CachedEntry) -> list[StreamChunk]:
    """The chunks to serve a stream hit: as stored, or synthesized from the response.

    They are the entry's own objects (not copies): every backend ``get`` decodes a
    fresh entry, so nothing the caller does to them reaches the cache.
    """
    if entry.chunks is not None:
        return list(entry.chunks)
    return chunks_from_response(entry.response)


def chunks_from_response(response: ChatResponse) -> list[StreamChunk]:
    """Stream shapes for a non-stream answer: text, one delta per tool call, finish + usage."""
    head: dict[str, Any] = {"id": response.id, "created": response.created, "model": response.model,
            "provider": response.provider}
    choice = response.choices[0] if response.choices else None
    message = choice.message if choice else None
    out = [StreamChunk(**head, choices=[ChunkChoice(delta=Delta(
        role="assistant", content=message.content if message else None))])]
    for i, tc in enumerate((message.tool_calls if message else None) or ()):
        delta = ToolCallDelta(index=i, id=tc.id, type="function",
                              function={"name": tc.function.name, "arguments": tc.function.arguments})
        out.append(StreamChunk(**head, choices=[ChunkChoice(delta=Delta(tool_calls=[delta]))]))
    finish: FinishReason | None = choice.finish_reason if choice else None
    out.append(StreamChunk(**head, choices=[ChunkChoice(finish_reason=finish)], usage=response.usage))
    return out


def response_from_chunks(chunks: list[StreamChunk], *, provider: str, model: str,
                         usage: Usage | None = None) -> ChatResponse:
    """Fold chunks into one response, exactly as a live stream is folded."""
    from ..streaming import Accumulator

    acc = Accumulator(provider, model)
    for chunk in chunks:
        acc.add(chunk)
    if chunks:
        acc.created = chunks[0].created or acc.created
    response = acc.response()
    if response.usage is None and usage is not None:
        response = response.model_copy(update={"usage": usage})
    return response


def is_storable(response: ChatResponse | None, complete: bool) -> bool:
    """Whether an answer may be cached: a whole stream (or a non-stream call) that
    ended normally with some content or tool calls. Errors and partial streams never are."""
    if not complete or response is None or not response.choices:
        return False
    choice = response.choices[0]
    if choice.finish_reason not in _STORABLE_FINISH:
        return False
    return bool(choice.message.content or choice.message.tool_calls)
