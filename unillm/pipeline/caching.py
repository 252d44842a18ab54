"""Steps 5 and 11: the response cache. A hit is replayed (streams too) at cost 0 with the
saving it made recorded; a complete answer is stored just before its row is settled, so
the row says what became of it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal, overload

from ..calls import Call, record_for
from ..streaming import (
    Accumulator,
    AsyncChatStream,
    ChatStream,
    aiter_list,
)
from ..types import ChatResponse
from .settling import parse_structured
from .steps import Steps

if TYPE_CHECKING:
    from ..cache.codec import CachedEntry


def _seen(call: Call, entry: Any) -> Any:
    call.cache_status = "miss" if entry is None else "hit"
    return entry


class Caching(Steps):
    def _cache_get(self, call: Call) -> Any:
        key = self._read_key(call)
        return None if key is None else _seen(call, self.cache.get(key))

    async def _acache_get(self, call: Call) -> Any:
        key = self._read_key(call)
        return None if key is None else _seen(call, await self.cache.aget(key))

    def _read_key(self, call: Call) -> str | None:
        """The key this call is looked up under; None when it is not looked up."""
        if call.cache is None or not call.cache.read:
            return None
        from ..cache import cache_key
        call.cache_key = cache_key(call.ref, call.request, namespace=call.cache.namespace)
        return call.cache_key

    @overload
    def _serve_hit(self, call: Call, entry: CachedEntry,
                   asynchronous: Literal[False] = False) -> ChatResponse | ChatStream: ...

    @overload
    def _serve_hit(self, call: Call, entry: CachedEntry,
                   asynchronous: Literal[True]) -> ChatResponse | AsyncChatStream: ...

    def _serve_hit(self, call: Call, entry: CachedEntry,
                   asynchronous: bool = False) -> ChatResponse | ChatStream | AsyncChatStream:
        """A hit costs nothing: no budget is charged; the row records what it saved."""
        from ..cache.codec import HIT_COST, replay_chunks, served
        from ..ledger.batch import hit_record, new_id
        rec_id = new_id() if self._recording else None
        resp = served(entry, {
            "cached": True, "provider": call.ref.provider, "requested_model": call.requested_model,
            "rule": call.rule, "cost": HIT_COST, "cache_status": "hit", "ledger_id": rec_id})
        self._route_done(call, None, sent=False)  # a hit sent nothing: its pick is released
        if self._recording or self._obs.active:
            if self.settings.log_content:  # the prompt and answer go in the row too: record_for's job
                rec = record_for(call, "cache_hit", cost=resp.cost, saved=entry.cost_usd, saved_reason="cache",
                                 response=resp, log_content=True, model=resp.model)
                resp.ledger_id = rec.id if self._recording else None
            else:
                rec = hit_record(call, resp, entry.cost_usd, rec_id)
            self._record(rec, None, resp=resp, traced=call)
        if call.request.response_model is not None:
            parse_structured(call, resp)
        if not call.stream:
            return resp
        acc = Accumulator(call.ref.provider, resp.model)
        if asynchronous:
            return AsyncChatStream(aiter_list(replay_chunks(entry)), acc, lambda a, e: resp, lambda exc: exc)
        return ChatStream(iter(replay_chunks(entry)), acc, lambda a, e: resp, lambda exc: exc)

    def _cache_put(self, call: Call, resp: ChatResponse, complete: bool, chunks: list[Any] | None) -> str | None:
        """Step 11, before the row is written so that the row says what happened: the call's
        cache_status (``stored``, or why the answer was not)."""
        decision = call.cache
        if decision is None or not decision.write:
            return call.cache_status
        from ..cache import cache_key
        from ..cache.codec import is_storable, make_entry
        if not complete:
            return "skipped:partial"   # errors and partial streams are never stored
        if call.capped and resp.choices and resp.choices[0].finish_reason == "length":
            return "skipped:capped"    # cut short by a budget's output cap
        if not is_storable(resp, complete):
            return "skipped:unstorable"
        key = call.cache_key if call.fallback_from is None and call.cache_key else \
            cache_key(call.ref, call.request, namespace=decision.namespace)  # the model that answered
        self.cache.set(key, make_entry(resp, chunks=chunks, namespace=decision.namespace), decision.ttl)
        return "stored"
