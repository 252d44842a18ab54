"""`Client`: one call pipeline over every vendor, sync and async.

``chat``/``achat`` follow DESIGN.md's twelve steps; each is a call into the module that
owns it, and every step that does no I/O is shared by both forms::

    1 request   validate (types.ChatRequest)                    _prepare
    2 resolve   model string -> ModelRef (profiles)             _prepare
    3 rules     swap / cap / set / deny (rules)                 _apply_rules
    5 cache     look up: a hit is replayed (streams too) at     _cache_get, _serve_hit
                cost 0, its saving recorded; 4 and 6-11 are skipped
    4 estimate  the price in force, found before sending;       _priced (after a miss),
                the worst case (prompt + output cap) when a      _worst (in _admit)
                budget or a rule asks for it
    6 budget    hold the worst case in every matching budget    _admit
                (written ahead), or refuse / downgrade / fall back
    7 call      adapter + retries (retry), fallbacks            _complete / _acomplete / _open_stream
    8 usage     the vendor's, else counted (tokens)             _finish
    9 cost      Price.cost -> itemized Decimal Cost             _finish
   11 store     cache write (complete answers only)             _cache_put, from _finish
   10 settle    ledger row + budget hold, one transaction       _record
   12 return    ChatResponse, or a ChatStream that runs 8-11 when it ends

The cache is read before the budget on purpose: a hit costs nothing, so it holds nothing,
and a spent budget never refuses an answer that is already paid for. The cache is written
(11) just before the row is settled (10) so that the row says what became of the answer
(its ``cache_status``: ``stored``, or why it was not).
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from pydantic import ValidationError

from . import errors, sections
from .adapters.base import Adapter
from .budgets.settle import commit
from .calls import Call, call_tags, deadline_error, failed_status, record_for
from .config import Settings, fields_of, load_settings, naming_file
from .metering.own import OWN
from .profiles import ModelRef, ProviderSettings, Resolver, load_adapter_class
from .retry import Retrier
from .streaming import (
    ALL_BUCKETS,
    Accumulator,
    AsyncChatStream,
    ChatStream,
    afirst_chunk,
    aiter_list,
    aprepend,
    first_chunk,
    prepend,
)
from .telemetry import Observer
from .types import ChatResponse, Usage, build_request, describe_errors

if TYPE_CHECKING:  # for the annotations only: each is imported when first used
    from typing_extensions import Self

    from .budgets import Budgets, Worst
    from .cache import CacheBackend
    from .cache.codec import CachedEntry
    from .cache.policy import CachePolicy
    from .embeddings.types import EmbeddingResponse
    from .ledger import Ledger
    from .pricing import Price, PriceBook
    from .rules import RuleContext, RuleSet

Clock = Callable[[], datetime]
T = TypeVar("T")

#: output cap injected under a budget when the request has none and the price book does not
#: know the model's maximum output (its `max_output_tokens`): a cap every vendor accepts, so the
#: hold stays a true bound of what the vendor can bill; the response says so (``capped``)
DEFAULT_MODEL_MAX = 4096

#: errors after which the next model of a [[fallbacks]] chain is tried
_FALLBACK_ON = (errors.RateLimitError, errors.ServerError, errors.TimeoutError, errors.ConnectionError,
                errors.ContextWindowExceededError, errors.ResponseError)


async def _asyncio_sleep(seconds: float) -> None:
    import asyncio  # imported when an async call first waits, not by `import unillm`
    await asyncio.sleep(seconds)


async def _within(run: Awaitable[Any], seconds: float) -> Any:
    """``await run``, cancelled after ``seconds`` (`asyncio.TimeoutError`). On 3.11+ in the
    caller's task: `asyncio.wait_for` there wraps it in a task of its own, a few event-loop
    steps per call at the gateway."""
    import asyncio
    if sys.version_info >= (3, 11):
        if seconds <= 0:  # as wait_for: a call already past its deadline is never started
            close = getattr(run, "close", None)
            if close is not None:
                close()
            raise asyncio.TimeoutError
        from .deadline import within
        return await within(run, seconds)  # asyncio.timeout without a timer per call
    return await asyncio.wait_for(run, seconds)  # pragma: no cover - Python 3.10


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Client:
    """One client for every configured vendor.

    ``Client(config="unillm.toml", providers={...}, ledger=..., ...)``: keyword
    arguments take the names of unillm.toml's keys and win over the file.
    ``clock``, ``sleep`` and ``asleep`` are injectable (time windows, periods, backoff).
    """

    def __init__(self, config: str | Path | Mapping[str, Any] | Settings | None = None, *,
                 clock: Clock | None = None, sleep: Callable[[float], None] | None = None,
                 asleep: Callable[[float], Awaitable[None]] | None = None,
                 **settings: Any) -> None:
        if isinstance(config, Settings):  # re-validated, with the overrides, as a file would be
            self.settings = load_settings(None, source=config.source, base=fields_of(config), deep=True,
                                          **settings)
        elif isinstance(config, Mapping):
            self.settings = load_settings(None, base=config, deep=True, **settings)
        else:
            self.settings = load_settings(config, deep=True, **settings)
        s = self.settings
        self.providers: dict[str, ProviderSettings] = s.providers
        self._resolver = Resolver(self.providers, s.aliases)
        self._adapters: dict[str, Adapter] = {}
        self._clock = _utcnow if clock is None else clock
        self._retrier = Retrier(s.retry, time.sleep if sleep is None else sleep,
                                _asyncio_sleep if asleep is None else asleep)
        self.rules = _load_rules(s)
        self._fallbacks = {spec.model: spec.then for spec in s.fallbacks}
        self._router = _load_router(self) if s.deployments else None
        self._pricebook: PriceBook | None = None
        self._ledger: Ledger | None = None
        self._cache: CacheBackend | None = None
        self._cache_policy: CachePolicy | None = None
        self._recording = s.ledger != "off"   # no ledger: no row is even built
        self.budgets: Budgets = _load_budgets(s, lambda: self.ledger.store, self._clock)
        from .sealed import SealedCache  # provider keys sealed in the ledger (`unillm secrets`)
        self._sealed = SealedCache(lambda: self.ledger.store, s) if self._recording else None
        from .price_overrides import OverrideCache
        self._overrides = OverrideCache()
        self._obs = Observer(s.telemetry, s.log_format, s.log_content, self._recording)  # events, spans, JSON logs
        if self.budgets and not self._recording:
            raise errors.ConfigError("budgets are kept in the ledger's database; they need a ledger "
                                     "(ledger is \"off\")", file=s.source, key="ledger", value="off")

    @classmethod
    def from_config(cls, path: str | Path, **overrides: Any) -> Client:
        """Read ``unillm.toml``; keyword arguments win over the file."""
        return cls(path, **overrides)

    # ── public API ───────────────────────────────────────────────────────────

    @overload
    def chat(self, model: str, messages: Iterable[Any], *, stream: Literal[False] = False,
             tags: Mapping[str, str] | None = None, cache: Any = None, **params: Any) -> ChatResponse: ...

    @overload
    def chat(self, model: str, messages: Iterable[Any], *, stream: Literal[True],
             tags: Mapping[str, str] | None = None, cache: Any = None, **params: Any) -> ChatStream: ...

    @overload
    def chat(self, model: str, messages: Iterable[Any], *, stream: bool,
             tags: Mapping[str, str] | None = None, cache: Any = None,
             **params: Any) -> ChatResponse | ChatStream: ...

    def chat(self, model: str, messages: Iterable[Any], *, stream: bool = False,
             tags: Mapping[str, str] | None = None, cache: Any = None,
             **params: Any) -> ChatResponse | ChatStream:
        """Send a chat request; a `ChatResponse`, or a `ChatStream` when ``stream=True``.

        ``cache``: None (the configured policy), False (skip), "refresh" (call and
        overwrite), or {"ttl": seconds, "namespace": ..., "sampled": bool}.
        """
        call = self._prepare(model, messages, params, tags, stream, cache)
        hit = self._cache_get(call)
        if hit is not None:
            return self._serve_hit(call, hit)
        self._priced(call)
        call = self._admit(call) if self.budgets else call
        return self._open_stream(call) if stream else self._complete(call)

    @overload
    async def achat(self, model: str, messages: Iterable[Any], *, stream: Literal[False] = False,
                    tags: Mapping[str, str] | None = None, cache: Any = None,
                    **params: Any) -> ChatResponse: ...

    @overload
    async def achat(self, model: str, messages: Iterable[Any], *, stream: Literal[True],
                    tags: Mapping[str, str] | None = None, cache: Any = None,
                    **params: Any) -> AsyncChatStream: ...

    @overload
    async def achat(self, model: str, messages: Iterable[Any], *, stream: bool,
                    tags: Mapping[str, str] | None = None, cache: Any = None,
                    **params: Any) -> ChatResponse | AsyncChatStream: ...

    async def achat(self, model: str, messages: Iterable[Any], *, stream: bool = False,
                    tags: Mapping[str, str] | None = None, cache: Any = None,
                    **params: Any) -> ChatResponse | AsyncChatStream:
        """Async `chat`: a `ChatResponse`, or an `AsyncChatStream` when ``stream=True``."""
        if self._stale_stores():
            await self._io(self._refresh_stores)
        call = self._prepare(model, messages, params, tags, stream, cache, asynchronous=True)
        if call.route is not None and call.deployment is None:  # its pick needs the shared state
            await self._io(self._route_late, call)
            call.adapter.warm(True)
        hit = await self._acache_get(call)
        if hit is not None:  # the steps that write to a store run on its threads, off the loop
            return await self._io(self._serve_hit, call, hit, True)
        self._priced(call)
        call = await self._io(self._admit, call) if self.budgets else call
        return await (self._aopen_stream(call) if stream else self._acomplete(call))

    def embed(self, model: str, input: str | list[str], *, dimensions: int | None = None,  # noqa: A002
              tags: Mapping[str, str] | None = None, cache: Any = None, **params: Any) -> EmbeddingResponse:
        """Embed ``input`` (a text or a list of texts): an OpenAI-shaped `EmbeddingResponse`.
        Sent in batches of the vendor's most inputs a request, one ledger row each; params:
        ``input_type`` (Cohere), ``task_type`` (Google), ``encoding_format``, ``user``, ``extra``."""
        from .embeddings.pipeline import embed
        return embed(self, model, input, dict(params, dimensions=dimensions), tags, cache)

    async def aembed(self, model: str, input: str | list[str], *, dimensions: int | None = None,  # noqa: A002
                     tags: Mapping[str, str] | None = None, cache: Any = None,
                     **params: Any) -> EmbeddingResponse:
        """Async `embed`."""
        from .embeddings.pipeline import aembed
        return await aembed(self, model, input, dict(params, dimensions=dimensions), tags, cache)

    def on(self, event: str, fn: Callable[[Any], None]) -> Callable[[Any], None]:
        """Call ``fn(record)`` on a per-call event of `unillm.events.CALL_EVENTS` ("call",
        "call.error", "cache.hit", "rule.applied": the `CallRecord`, on a background thread),
        or ``fn(event)`` on one of `unillm.budgets.alerts.EVENTS` ("budget.alert",
        "budget.exceeded", "optimization.applied", "api_key.invalid", ...: a dict) or "*"."""
        from .events import CALL_EVENTS
        if event in CALL_EVENTS:
            return self._obs.events.on(event, fn)
        return self.budgets.on(event, fn)

    @property
    def events(self) -> Any:
        """The per-call `unillm.events.Events` (``client.events.flush()`` waits for callbacks)."""
        return self._obs.events

    def section(self, name: str) -> sections.Section:
        """``with client.section("agent:research"):`` labels (and nests) every call inside."""
        return sections.Section(name)

    def explain(self, model: str, messages: Iterable[Any], *, stream: bool = False,
                tags: Mapping[str, str] | None = None, at: datetime | None = None,
                **params: Any) -> dict[str, Any]:
        """What the rules would do with this call (``stream=True``: streamed), as data: each
        rule, each condition held or failed, and the resulting request. Nothing is sent or
        recorded. A model with ``[[deployments]]`` adds ``route``: the deployment the strategy
        would pick now, and why."""
        from .rules import RuleSet, explain_dict
        request = build_request(model, messages, params, drop_params=self.settings.drop_params)
        ref = self._resolve(model)
        call = Call(request, ref, self._adapter(ref.provider), {**self.settings.tags, **(tags or {})}, model,
                    at or self._clock(), stream, sections.current())
        rules = self.rules or RuleSet()
        ctx = self._rule_context(call)
        decision = rules.evaluate(ctx)
        out = explain_dict(rules.explain(ctx), decision, request)
        route = self._routed_name(decision.use if decision and decision.use else model)
        if route is not None and self._router is not None:
            out["route"] = self._router.preview(route)  # the deployment the strategy would pick
        return out

    def resolve(self, model: str) -> ModelRef:
        """Where ``model`` leads (provider, vendor model id, wire protocol)."""
        return self._resolver.resolve(model)

    @property
    def pricebook(self) -> PriceBook:
        """The price book in force: bundled pricing.toml merged with ``pricing=``; a cloud
        provider without entries of its own priced by its cloud's (`cloud.price_tables`)."""
        if self._pricebook is None:
            from .adapters.cloud import price_tables
            from .pricing import PriceBook
            self._pricebook = PriceBook.load(self.settings.pricing).priced_as(price_tables(self.settings.providers))
        if self._ledger is not None and self._recording:  # `PUT /admin/prices` overrides, over the book
            book: PriceBook = self._overrides.over(self._pricebook, self._ledger.store)
            self._ledger.pricebook = book
            return book
        return self._pricebook

    def use_pricebook(self, book: PriceBook) -> None:
        """Price calls from now on with ``book`` (the gateway's hot reload of price files)."""
        self._pricebook = book

    @property
    def cache(self) -> CacheBackend:
        """The response cache backend (opened on first use; `NullCache` when ``cache = "off"``)."""
        if self._cache is None:
            from .cache import open_cache
            self._cache = naming_file(lambda: open_cache(self.settings.cache), self.settings.source)
        return self._cache

    @property
    def cache_policy(self) -> CachePolicy:
        if self._cache_policy is None:
            from .cache.policy import CachePolicy
            self._cache_policy = CachePolicy.from_settings(self.settings)
        return self._cache_policy

    @property
    def ledger(self) -> Ledger:
        """The `unillm.ledger.Ledger` every call is recorded in (opened on first use)."""
        if self._ledger is None:
            from .ledger import Ledger, open_store
            store = naming_file(lambda: open_store(self.settings.ledger), self.settings.source)
            self._ledger = Ledger(store, self.pricebook, self.settings.tags,
                                  on_missing_price=self.settings.on_missing_price, resolver=self.resolve)
        return self._ledger

    def _io(self, step: Callable[..., T], *args: Any) -> Awaitable[T]:
        """``await self._io(step, ...)``: a step that writes to the ledger or the cache (the
        same function the sync path calls) on the ledger store's threads, off the loop."""
        done: Awaitable[T] = self.ledger.store.arun(step, *args)
        return done

    def close(self) -> None:
        """Close everything this client opened: SDK connections, the ledger store (its file or
        pool, and its threads), the cache, the budget heartbeat and webhook threads. Idempotent;
        a client used again afterwards opens what it needs anew."""
        for adapter in self._adapters.values():
            adapter.close()
        self._close_stores()

    async def aclose(self) -> None:
        """`close`, with the async SDK clients of the running loop; the stores' threads are
        joined off the loop."""
        import asyncio
        for adapter in self._adapters.values():
            await adapter.aclose()
        await asyncio.get_running_loop().run_in_executor(None, self._close_stores)

    def _close_stores(self) -> None:
        ledger, cache, self._ledger, self._cache = self._ledger, self._cache, None, None
        self._obs.close()
        self.budgets.close()
        if ledger is not None:
            ledger.close()
        if cache is not None:
            cache.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # ── steps 1-4 (no I/O but the ledger row of a refusal) ───────────────────

    def _prepare(self, model: str, messages: Iterable[Any], params: dict[str, Any],
                 tags: Mapping[str, str] | None, stream: bool, cache: Any = None,
                 asynchronous: bool = False) -> Call:
        request = build_request(model, messages, params, drop_params=self.settings.drop_params)
        ref = self._resolve(model)
        all_tags = {**self.settings.tags, **call_tags(tags)} if tags is not None else dict(self.settings.tags)
        call = Call(request, ref, self._adapter(ref.provider), all_tags, model, self._clock(), stream,
                    sections.current())
        if self.rules:
            self._apply_rules(call, self.rules)
        if self._router is not None:
            self._route(call, call.route or self._routed_name(model), asynchronous)
        decision = call.cache = self.cache_policy.decide(call.request, cache)
        if call.rule_ttl is not None and decision.write:
            call.cache = replace(decision, ttl=call.rule_ttl)
        call.cache_status = decision.status if self.cache_policy.enabled else None
        call.adapter.warm(asynchronous)
        # latency and deadlines are the request's: not rules, pricing, SDK set-up
        call.t0 = call.begun = time.perf_counter()
        return call

    def _rule_context(self, call: Call) -> RuleContext:
        from .rules import RuleContext
        return RuleContext(call.request, call.ref, tags=call.tags, now=call.at, stream=call.stream,
                           prompt_tokens=lambda: self._prompt_tokens(call),
                           estimated_cost=lambda: self._estimated_cost(call),
                           budget_used=lambda: self.budgets.used_fraction(call.tags) if self.budgets else None)

    def _apply_rules(self, call: Call, rules: RuleSet) -> None:
        """Step 3: the first matching rule may swap the model, cap tokens, set params or deny."""
        decision = rules.evaluate(self._rule_context(call))
        if not decision:
            return
        if decision.shadow:
            call.shadow_rule = ",".join(d.rule for d in decision.shadow if d.rule)
        if decision.rule is None:
            return
        call.rule = decision.rule
        if decision.deny is not None:
            err = errors.RuleDeniedError(decision.rule, decision.deny)
            self._record(record_for(call, "rule_denied", error=err))
            raise err
        call.rule_ttl = decision.cache_ttl
        request = decision.apply(call.request)
        if decision.use is not None:
            ref = self._resolve(decision.use)
            call.route = self._routed_name(decision.use)
            if ref != call.ref:
                call.swapped_from, call.ref, call.adapter = call.ref, ref, self._adapter(ref.provider)
        call.request = request
        if self.budgets.alerts.wants("optimization.applied"):
            self.budgets.alerts.emit({"event": "optimization.applied", "rule": decision.rule,
                                      "requested_model": call.requested_model, "model": str(call.ref),
                                      "swapped_from": str(call.swapped_from) if call.swapped_from else None,
                                      "tags": dict(call.tags), "at": call.at.isoformat()})

    def _price_of(self, call: Call, ref: ModelRef) -> Price | None:
        """Step 4: the price in force, found before anything is sent (never a silent $0)."""
        if self._recording:
            self.ledger  # noqa: B018 - opened first: its database holds the price overrides
        try:
            return self.pricebook.price(ref.provider, ref.model, call.at)
        except errors.MissingPriceError as err:
            if self.settings.on_missing_price == "record":
                return None
            self._record(record_for(call, "error", error=err))
            raise

    def _priced(self, call: Call) -> None:
        """Step 4, once the cache has not answered (a hit pays nothing: it needs no price). The
        request's latency and deadline start after it, as after the rest of `_prepare`."""
        call.price = self._price_of(call, call.ref)
        call.t0 = call.begun = time.perf_counter()

    def _admit(self, call: Call) -> Call:
        """Step 6: hold the call's worst case in every matching budget, or refuse it.

        A refusal may downgrade (``on_exceed = "downgrade:MODEL"``) or move on to a
        fallback model that fits; the call that was admitted is returned.
        """
        deadline = self._deadline_of(call)
        while True:
            adm = self._hold(call, deadline)
            if adm.denied is None:
                break
            spec = adm.denied_spec
            if spec is not None and spec.downgrade_to and call.rule != f"budget:{spec.name}" \
                    and call.kind == "chat":  # a chat model cannot answer an embedding call
                self._swap(call, spec.downgrade_to, rule=f"budget:{spec.name}")
                continue
            self._route_done(call, None, sent=False)  # refused before sending: its pick is released
            self._record(record_for(call, "budget_denied", error=adm.denied), traced=call)
            nxt = self._next_in_chain(call)  # a fallback model may fit where this one did not
            if nxt is None:
                raise adm.denied
            call = nxt
        call.reservation = adm.hold
        if adm.hold is not None and call.request.max_tokens is None and call.kind == "chat":
            call.request = call.request.model_copy(update={"max_tokens": adm.hold.cap})
            call.capped = True
            known = call.price.max_output_tokens if call.price is not None else None
            call.budget_cap = adm.hold.cap if known is None or adm.hold.cap < known else None
        return call

    def _worst(self, call: Call) -> Worst:
        from .budgets import Worst
        if call.kind == "embed":
            from .embeddings.pipeline import worst
            return worst(self, call)
        tokens, source = self._count(call)
        model_max = (call.price.max_output_tokens if call.price is not None else None) or DEFAULT_MODEL_MAX
        return Worst.of(call.price, tokens, exact=source == "tiktoken", max_tokens=call.request.max_tokens,
                        model_max=model_max)

    def _swap(self, call: Call, model: str, rule: str) -> None:
        ref = self._resolver.resolve(model)
        call.swapped_from = call.swapped_from or call.ref
        call.ref, call.adapter, call.rule = ref, self._adapter(ref.provider), rule
        call.price = self._price_of(call, ref)

    def _prompt_tokens(self, call: Call) -> int:
        return self._count(call)[0]

    def _count(self, call: Call) -> tuple[int, str]:
        """The prompt's ``(tokens, source)``, counted once per call (rules, budget, estimates
        share it) until a rule, downgrade or fallback changes the messages or the model."""
        req, ref, memo = call.request, call.ref, call.prompt
        if memo is not None and memo[0] is req.messages and memo[1] is req.tools and memo[2] == ref:
            return memo[3]  # type: ignore[no-any-return]
        from .tokens import count_prompt
        got = count_prompt(req, ref.model, self.providers[ref.provider])
        call.prompt = (req.messages, req.tools, ref, got)
        return got

    def _estimated_cost(self, call: Call) -> Decimal | None:
        """Worst case: the prompt plus the output cap, at the model's prices."""
        try:
            price = self.pricebook.price(call.ref.provider, call.ref.model, call.at)
        except errors.MissingPriceError:
            return None
        usage = Usage(input_tokens=self._prompt_tokens(call), output_tokens=call.request.max_tokens or 0)
        return price.cost(usage).total_usd

    def _stale_stores(self) -> bool:
        """Something `_prepare` reads from the ledger's database is due: the store not yet
        open, price overrides or sealed keys past their refresh (`achat` reads them first,
        on the store's threads, so no query runs on the event loop)."""
        if self._router is not None and self._router.stale():
            return True  # the shared routing health, read at most every [routing] state_ttl
        if not self._recording:
            return False
        return self._ledger is None or self._overrides.stale() or (self._sealed is not None and self._sealed.stale())

    def _refresh_stores(self) -> None:
        if self._router is not None and self._router.stale():
            self._router.refresh()
        if not self._recording:
            return
        self.ledger  # noqa: B018 - opened here, not on the loop
        self.pricebook  # noqa: B018 - re-reads the price overrides
        if self._sealed is not None:
            self._sealed.keys()

    def sealed_key(self, provider: str) -> str | None:
        """Apply ``provider``'s sealed key when its config gives none (`unillm.sealed`);
        returns it (None: not sealed or not needed)."""
        return self._sealed.apply(self.providers, self._adapters, provider) if self._sealed else None

    def _adapter(self, provider: str) -> Adapter:
        if self._sealed is not None:
            self.sealed_key(provider)
        adapter = self._adapters.get(provider)
        if adapter is None:
            settings = self.providers[provider]
            adapter = load_adapter_class(settings.adapter)(settings)
            adapter.load_sdk()  # before any call's timer starts (Call.t0): latency is the request's
            self._adapters[provider] = adapter
        return adapter

    # ── deployments (unillm.routing) ────────────────────────────────────────

    def _routed_name(self, model: str) -> str | None:
        """The ``[[deployments]]`` model name ``model`` leads to (aliases followed), if any."""
        if self._router is None:
            return None
        seen = 0
        while model in self.settings.aliases and seen < 64:
            model, seen = self.settings.aliases[model], seen + 1
        return model if self._router.routes(model) else None

    def _resolve(self, model: str) -> ModelRef:
        name = self._routed_name(model)
        if name is None or self._router is None:
            return self._resolver.resolve(model)
        d = self._router.groups[name][0]
        return ModelRef(d.provider, d.vendor_model, self.providers[d.provider].adapter)

    def _route(self, call: Call, name: str | None, asynchronous: bool = False) -> None:
        """Send ``call`` to the deployment of ``name`` the strategy picks (counted in flight).
        On the event loop a pick that needs the shared state is left to `_route_late`."""
        if name is None or self._router is None:
            return
        try:
            pick = self._router.pick(name, call.route_tried, tokens=lambda: self._route_tokens(call),
                                     ttl=self._deadline_of(call), io=not asynchronous)
        except errors.ProviderError as err:
            self._record(record_for(call, "error", error=err))
            raise
        if pick is None:
            call.route = name
            return
        d = pick.deployment
        call.route, call.deployment, call.route_held = name, d.label, pick
        call.route_tried = call.route_tried | {d.label}
        call.ref = ModelRef(d.provider, d.vendor_model, self.providers[d.provider].adapter)
        call.adapter = self._adapter(d.provider)

    def _route_late(self, call: Call) -> None:
        """`achat`: the pick `_prepare` left (it reads or writes the shared state), on the
        store's threads (`_priced` prices the deployment it chose)."""
        self._route(call, call.route)

    def _route_tokens(self, call: Call) -> int:
        """What a pick reserves against a deployment's TPM: the prompt plus its max_tokens."""
        return self._count(call)[0] + (call.request.max_tokens or 0)

    def _route_done(self, call: Call, err: BaseException | None, tokens: int = 0, sent: bool = True) -> None:
        if self._router is None or call.deployment is None or not call.route_held:
            return
        pick, call.route_held = call.route_held, False  # released once
        latency = call.ttft_ms if call.ttft_ms is not None else call.elapsed_ms()
        self._router.done(call.deployment, error=err, latency_ms=latency if err is None else None,
                          tokens=tokens, sent=sent and call.attempt > 0, pick=pick)

    def _next_deployment(self, call: Call) -> Call | None:
        """The next healthy deployment of the same model, before any fallback model."""
        if self._router is None or call.route is None:
            return None
        try:
            pick = self._router.pick(call.route, call.route_tried, tokens=lambda: self._route_tokens(call),
                                     ttl=self._time_left(call))
        except errors.ProviderError:
            return None
        if pick is None:
            return None
        d = pick.deployment
        ref = ModelRef(d.provider, d.vendor_model, self.providers[d.provider].adapter)
        nxt = call.retarget(ref, self._adapter(d.provider), self._price_of(call, ref), call.deployment or str(call.ref))
        nxt.route, nxt.deployment, nxt.route_tried = call.route, d.label, call.route_tried | {d.label}
        nxt.route_held = pick
        nxt.remaining = call.remaining
        return self._admit(nxt) if self.budgets else nxt

    def _max_retries(self, call: Call) -> int:
        """Retries on this deployment: none while the model has another one to try."""
        if self._router is not None and call.route is not None and \
                len(self._router.groups[call.route]) > len(call.route_tried):
            return 0
        return call.adapter.settings.max_retries

    def route_status(self) -> list[dict[str, Any]]:
        """Each deployment's health, in-flight count, RPM/TPM used, latency EWMA, error rate."""
        return self._router.status() if self._router is not None else []

    # ── step 7: call, retries, fallbacks ─────────────────────────────────────

    def _translate(self, call: Call, exc: BaseException) -> BaseException:
        """The one boundary where SDK exceptions become unillm's, the provider's secrets redacted."""
        return call.adapter.translate(exc, call.ref.model)

    def _attempt(self, call: Call, run: Callable[[float | None], Any]) -> Any:
        """``run(timeout)`` with retries; every HTTP attempt is counted, and each one retried is
        a row. No attempt runs past the call's deadline (see `_attempt_timeout`)."""
        def once() -> Any:
            timeout = self._attempt_timeout(call)
            call.next_attempt()
            own = OWN.set(True)  # this request is recorded here: observe() leaves it alone
            traced = self._obs.attempt(call) if self._obs.tracer else None
            try:
                return run(timeout)
            except Exception as exc:
                self._check_cut(call, exc, timeout)
                raise
            finally:
                OWN.reset(own)
                self._obs.sent(traced)
        return self._retrier.run(once, lambda e: self._translate(call, e), self._max_retries(call),
                                 lambda e: self._record_retried(call, e), lambda: self._time_left(call))

    def _aattempt(self, call: Call, run: Callable[[float | None], Awaitable[Any]]) -> Awaitable[Any]:
        async def once() -> Any:
            timeout = self._attempt_timeout(call)
            call.next_attempt()
            own = OWN.set(True)
            traced = self._obs.attempt(call) if self._obs.tracer else None
            try:
                return await run(timeout)
            except Exception as exc:
                self._check_cut(call, exc, timeout)
                raise
            finally:
                OWN.reset(own)
                self._obs.sent(traced)
        return self._retrier.arun(once, lambda e: self._translate(call, e), self._max_retries(call),
                                  lambda e: self._record_retried(call, e), lambda: self._time_left(call))

    def _deadline_of(self, call: Call) -> float | None:
        return self.settings.stream_deadline if call.stream else self.settings.call_deadline

    def _time_left(self, call: Call) -> float | None:
        return call.time_left(self._deadline_of(call))

    def _attempt_timeout(self, call: Call) -> float | None:
        """The next attempt's timeout when the call's deadline comes before the provider's
        ``timeout`` would (None: the provider's, set on the SDK client). Past the deadline no
        attempt starts: a `TimeoutError` naming it, nothing sent."""
        left = self._time_left(call)
        if left is None or left >= call.adapter.settings.timeout:
            return None
        if left <= 0:
            raise self._cut(call, sent=False)
        return left

    def _check_cut(self, call: Call, exc: Exception, timeout: float | None) -> None:
        """An attempt whose timeout was the time left that timed out: the deadline cut it (a
        vendor's own 408 answer, which has a status, is not that)."""
        if timeout is None:
            return
        err = self._translate(call, exc)
        if isinstance(err, errors.TimeoutError) and err.status_code is None:
            raise self._cut(call, sent=True) from exc

    def _cut(self, call: Call, sent: bool) -> errors.TimeoutError:
        setting = "stream_deadline" if call.stream else "call_deadline"
        return deadline_error(call, setting, self._deadline_of(call) or 0.0, sent=sent)

    def _record_retried(self, call: Call, err: BaseException) -> None:
        """The row of an attempt that failed and is tried again. No answer, no usage: cost None.
        ``unknown`` when the vendor may have billed it: then its budget hold is settled at its
        worst case now, and the retry needs a hold of its own (`_readmit`); else the hold stays
        with the call."""
        if self._router is not None and call.deployment is not None:
            self._router.done(call.deployment, error=err, release=False)
        if not self._recording and not self._obs.active:
            return
        status = failed_status(err)
        held = call if status == "unknown" and call.reservation is not None else None
        self._record(record_for(call, status, error=err, retried=True), held, traced=call)
        if held is not None:
            self._readmit(call)

    def _readmit(self, call: Call) -> None:
        """A hold for the retry of an attempt counted at its worst case, or `BudgetExceededError`
        ending the call (recorded as ``budget_denied`` by `_fallback`)."""
        adm = self._hold(call, self._time_left(call))
        if adm.denied is not None:
            raise adm.denied
        call.reservation = adm.hold

    def _hold(self, call: Call, deadline: float | None) -> Any:
        """Admission to every matching budget (the alerts it raises emitted); the `Admission`."""
        worst = self._worst(call)  # (counting may load an encoding: the lease starts after it)
        # flight: the write-ahead row. A process killed mid-call leaves it, and it settles
        # as `unknown` at the hold's worst case (budgets.store.take_expired)
        from .budgets.flight import in_flight
        adm = self.budgets.admit(call.tags, worst, self._clock(), deadline=deadline, flight=partial(in_flight, call))
        for event in adm.events:
            self.budgets.alerts.emit(event)
        return adm

    def _fallback(self, call: Call, err: BaseException) -> Call | None:
        """Record the failed attempt (releasing its budget hold); the next model of its
        [[fallbacks]] chain when the error is one a fallback may answer, else None."""
        if isinstance(err, errors.UnillmError):
            self._record(record_for(call, failed_status(err), error=err), call)
        else:  # not ours (a bug, KeyboardInterrupt): record if we can, never mask it
            try:
                self._record(record_for(call, failed_status(err), error=err), call)
            except Exception:  # noqa: BLE001, S110 - the caller re-raises `err`: a failed row must not mask it
                pass
        self._route_done(call, err)
        if not isinstance(err, _FALLBACK_ON):
            return None  # auth and bad requests are not masked by a fallback
        if call.overdue(self._deadline_of(call)):
            return None  # past the call's deadline: no further model is tried
        nxt = self._next_deployment(call) or self._next_in_chain(call)
        return self._admit(nxt) if nxt is not None and self.budgets else nxt

    def _next_in_chain(self, call: Call) -> Call | None:
        remaining = call.remaining if call.remaining is not None else self._chain_for(call)
        if not remaining:
            return None
        ref = self._resolve(remaining[0])
        nxt = call.retarget(ref, self._adapter(ref.provider), self._price_of(call, ref),
                            call.fallback_from or str(call.ref))
        nxt.remaining = remaining[1:]
        nxt.route, nxt.deployment, nxt.route_tried = None, None, frozenset()
        if self._router is not None and self._routed_name(remaining[0]):
            self._route(nxt, self._routed_name(remaining[0]))
        return nxt

    def _chain_for(self, call: Call) -> list[str]:
        for key in (str(call.ref), call.ref.model, call.requested_model):
            if key in self._fallbacks:
                return list(self._fallbacks[key])
        return []

    def _with_fallbacks(self, call: Call, attempt: Callable[[Call], Any]) -> tuple[Call, Any]:
        """``attempt(call)`` (retries inside); on failure the attempt is recorded, its budget
        hold released, and the next model of the fallback chain tried. Returns the call that
        succeeded and its result."""
        while True:
            try:
                return call, attempt(call)
            except BaseException as err:  # recorded whatever it was; only vendor failures fall back
                try:
                    nxt = self._fallback(call, err)
                except BaseException as refused:  # the next model's budget refused it: the call ends
                    self._gave_up(call, refused)
                    raise
                if nxt is None:
                    self._gave_up(call, err)
                    raise
                call = nxt

    async def _awith_fallbacks(self, call: Call, attempt: Callable[[Call], Awaitable[Any]]) -> tuple[Call, Any]:
        while True:
            try:
                return call, await attempt(call)
            except BaseException as err:
                try:
                    nxt = await self._io(self._fallback, call, err)
                except BaseException as refused:
                    self._gave_up(call, refused)
                    raise
                if nxt is None:
                    self._gave_up(call, err)
                    raise
                call = nxt

    def _gave_up(self, call: Call, err: BaseException) -> None:
        """No further attempt: the call's spans end with ``err``."""
        if self._obs.tracer:
            self._obs.failed(call, err)

    def _complete(self, call: Call) -> ChatResponse:
        call, resp = self._with_fallbacks(
            call, lambda c: self._attempt(c, lambda t: c.adapter.complete(c.request, c.ref.model, timeout=t)))
        return self._finish(call, resp)

    async def _acomplete(self, call: Call) -> ChatResponse:
        run = self._awith_fallbacks(
            call, lambda c: self._aattempt(c, lambda t: c.adapter.acomplete(c.request, c.ref.model, timeout=t)))
        limit = self.settings.call_deadline
        if limit is None:
            call, resp = await run
            return await self._io(self._finish, call, resp)
        import asyncio
        try:  # past the deadline the attempt is cancelled: recorded, its hold released
            call, resp = await _within(run, max(limit - (time.perf_counter() - call.begun), 0.0))
        except asyncio.TimeoutError as exc:
            err = self._cut(call, sent=True)  # the sync path's error: named, never retried
            self._route_done(call, err)
            if call.reservation is not None:  # cancelled before it even started: nothing recorded it
                self._record(record_for(call, "error", error=err), call)
            raise err from exc
        return await self._io(self._finish, call, resp)

    def _open_stream(self, call: Call) -> ChatStream:
        """Open the stream (its first chunk read inside the retry loop) and wrap it."""
        call, (gen, first) = self._with_fallbacks(
            call, lambda c: self._attempt(
                c, lambda t: first_chunk(c.adapter.stream(c.request, c.ref.model, timeout=t))))
        return ChatStream(prepend(first, gen), Accumulator(call.ref.provider, call.ref.model, gen),
                          lambda a, e: self._finish_stream(call, a, e), lambda exc: self._translate(call, exc),
                          self._stream_deadline(call))

    async def _aopen_stream(self, call: Call) -> AsyncChatStream:
        call, (gen, first) = await self._awith_fallbacks(
            call, lambda c: self._aattempt(
                c, lambda t: afirst_chunk(c.adapter.astream(c.request, c.ref.model, timeout=t))))
        return AsyncChatStream(aprepend(first, gen), Accumulator(call.ref.provider, call.ref.model, gen),
                               lambda a, e: self._finish_stream(call, a, e), lambda exc: self._translate(call, exc),
                               self._stream_deadline(call), offload=self._io)

    def _stream_deadline(self, call: Call) -> float | None:
        """When the stream is cut (a `time.perf_counter` value), counted from the call's start."""
        limit = self.settings.stream_deadline
        return None if limit is None else call.begun + limit

    # ── steps 8-12 ───────────────────────────────────────────────────────────

    def _finish(self, call: Call, resp: ChatResponse, *, complete: bool = True,
                error: BaseException | None = None, chunks: list[Any] | None = None) -> ChatResponse:
        """Usage (counted when the vendor gave none), cost, savings, ledger row."""
        resp.provider, resp.requested_model, resp.rule = call.ref.provider, call.requested_model, call.rule
        resp.sent_model = call.ref.model
        resp.capped = call.budget_cap
        if resp.usage is None:
            resp.usage = self._count_usage(call, resp)
        if resp.usage.problem:
            self._bad_usage(call, resp, error)
        price = call.price if not resp.model or resp.model == call.ref.model else self._reported_price(call, resp)
        cost = resp.cost = price.cost(resp.usage) if price is not None else None
        saved, reason = self._rule_saving(call, resp.usage, cost)
        # a stream that opened was accepted by the vendor, which bills its prompt however far it
        # got: an incomplete one is settled as partial (input counted, output as received)
        status = ("ok" if cost is not None else "unpriced") if complete else "partial"
        resp.cache_status = call.cache_status = self._cache_put(call, resp, complete, chunks)
        resp.dropped_params = call.request.dropped
        if self._recording or self._obs.rows:
            rec = record_for(call, status, usage=resp.usage, cost=cost, error=error, saved=saved,
                             saved_reason=reason, response=resp, log_content=self.settings.log_content,
                             model=resp.model or call.ref.model)
            try:
                self._record(rec, call, cost=cost, tokens=resp.usage.total_tokens, resp=resp)
            except errors.LedgerError as err:
                err.response = resp  # paid for and received: the caller may still use it
                raise
            resp.ledger_id = rec.id if self._recording else None
        elif self._obs.tracer:  # spans and metrics only: no row is built for them
            self._obs.finished(call, status, resp, cost, error, saved)
        self._route_done(call, None, resp.usage.total_tokens)  # (no ledger: its row did not release it)
        if call.request.response_model is not None and complete:
            _parse_structured(call, resp)
        return resp

    def _reported_price(self, call: Call, resp: ChatResponse) -> Any:
        """The price of the model the vendor says answered. A dated snapshot of the model sent
        (``gpt-4o`` answered as ``gpt-4o-2024-08-06``), or a name the price book resolves to the
        same entry, is the model sent, priced by its own entry when it has one; another model is
        priced as itself and flagged (``resp.model_mismatch``, a `ModelMismatchWarning`)."""
        book, provider = self.pricebook, call.ref.provider
        reported = book.find(provider, resp.model)
        if reported is book.find(provider, call.ref.model):
            return call.price
        if not resp.model.startswith(call.ref.model + "-"):  # not a snapshot of the model sent
            resp.model_mismatch = True
            priced_as = (f"priced as {resp.model!r}" if reported is not None else
                         "which has no price; the call is priced as the model sent")
            warnings.warn(f"{provider} answered {call.ref.model!r} with {resp.model!r}, {priced_as}",
                          errors.ModelMismatchWarning, stacklevel=4)
        return call.price if reported is None else book.price(provider, resp.model, call.at)

    def _bad_usage(self, call: Call, resp: ChatResponse, cause: BaseException | None) -> None:
        """Impossible figures from the vendor: an ``error`` row keeping them as reported (no
        cost: they cannot be priced), then `UsageError` carrying the answer, which was paid for."""
        usage = resp.usage
        err = errors.UsageError(usage.problem or "impossible usage", usage=usage, response=resp,  # type: ignore[union-attr]
                                provider=call.ref.provider, model=resp.model or call.ref.model)
        if self._recording:
            rec = record_for(call, "error", usage=usage, error=err, response=resp,
                             log_content=self.settings.log_content, model=resp.model or call.ref.model)
            self._record(rec, call)
            resp.ledger_id = rec.id
        if cause is not None:
            raise err from cause
        raise err

    def _finish_stream(self, call: Call, acc: Accumulator, error: BaseException | None) -> ChatResponse:
        """A stream's end. Complete only when the vendor said so (a finish reason) and nothing
        broke; else partial, with the vendor's figures for every bucket it had reported and
        only the rest counted."""
        if acc.first_at is not None:
            call.ttft_ms = (acc.first_at - call.attempt_t0) * 1000.0  # of the attempt that answered
        complete = error is None and acc.finish_reason is not None
        resp = acc.response()
        if resp.usage is None:
            reported, buckets = acc.reported()
            if reported is not None and buckets:
                resp.usage = reported if buckets >= ALL_BUCKETS else \
                    self._count_usage(call, resp, reported, buckets)
        return self._finish(call, resp, complete=complete, error=error, chunks=acc.chunks)

    # ── step 5 and 11: the response cache ───────────────────────────────────

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
        from .cache import cache_key
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
        from .cache.codec import HIT_COST, replay_chunks, served
        from .ledger.batch import hit_record, new_id
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
            _parse_structured(call, resp)
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
        from .cache import cache_key
        from .cache.codec import is_storable, make_entry
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

    def _count_usage(self, call: Call, resp: ChatResponse, reported: Usage | None = None,
                     buckets: frozenset[str] = frozenset()) -> Usage:
        """Usage counted locally, keeping the vendor's figures for the ``buckets`` it reported."""
        from .tokens import count_usage
        msg = resp.choices[0].message if resp.choices else None
        text = (msg.content or "") if msg else ""
        if msg and msg.tool_calls:
            text += "".join(tc.function.name + tc.function.arguments for tc in msg.tool_calls)
        return count_usage(call.request, text, call.ref.model, self.providers[call.ref.provider],
                           reported=reported, buckets=buckets)

    def _rule_saving(self, call: Call, usage: Usage, cost: Any) -> tuple[Decimal | None, str | None]:
        """A swap's saving: the actual usage priced at the original model minus what was paid."""
        if call.swapped_from is None or cost is None:
            return None, None
        try:
            original = self.pricebook.price(call.swapped_from.provider, call.swapped_from.model, call.at)
        except errors.MissingPriceError:
            return None, None
        return original.cost(usage).total_usd - cost.total_usd, "rule"

    def _record(self, rec: Any, call: Call | None = None, cost: Any = None, tokens: int = 0,
                resp: ChatResponse | None = None, traced: Call | None = None) -> None:
        """Step 10: the ledger row and the call's budget hold (settled into spend, or released
        when nothing was spent) commit in one transaction; durable when this returns. Then
        the row goes to callbacks, spans and logs (`unillm.telemetry`), if any."""
        hold = call.reservation if call is not None else None
        if self._recording:
            if call is not None:
                call.reservation = None
            if call is not None and call.route_held and rec.status not in ("in_flight", "error", "unknown",
                                                                             "budget_denied"):
                with self.ledger.store.transaction():  # the row and the deployment's health: one commit
                    commit(self.ledger, self.budgets, rec, hold, cost.total_usd if cost else None, tokens)
                    self._route_done(call, None, tokens)
            else:
                commit(self.ledger, self.budgets, rec, hold, cost.total_usd if cost else None, tokens)
        if self._obs.active:
            self._obs.recorded(rec, call or traced, resp, hold is not None)


# ── small helpers ────────────────────────────────────────────────────────────

def _seen(call: Call, entry: Any) -> Any:
    call.cache_status = "miss" if entry is None else "hit"
    return entry


def _load_budgets(s: Settings, store: Callable[[], Any], clock: Clock) -> Any:
    from .budgets import Alerts, Budgets
    outbox = None
    if s.alerts.webhooks:
        if s.ledger == "off":
            raise errors.ConfigError("[[alerts.webhooks]] are delivered through an outbox in the ledger's "
                                     'database; they need a ledger (ledger is "off")', file=s.source,
                                     key="alerts.webhooks", value="off")
        from .webhooks import Outbox
        outbox = Outbox(s.alerts.webhooks, store)
    return Budgets(s.budgets, store, clock, s.timezone, Alerts(s.alerts.webhook, outbox=outbox))


def _load_router(client: Client) -> Any:
    from .routing import MemoryState, RedisState, Router, SQLState
    s = client.settings
    mode = s.routing.state or ("ledger" if s.ledger != "off" else "memory")
    if mode == "ledger" and s.ledger == "off":
        raise errors.ConfigError('routing state is kept in the ledger\'s database; it needs a ledger '
                                 '(ledger is "off"); set [routing] state = "memory"', file=s.source,
                                 key="routing.state", value="ledger")
    state: Any = SQLState(lambda: client.ledger.store) if mode == "ledger" else \
        MemoryState() if mode == "memory" else RedisState(mode)

    def price(d: Any) -> Decimal | None:
        try:
            p = client.pricebook.price(d.provider, d.vendor_model)
        except errors.MissingPriceError:
            return None
        return p.cost(Usage(input_tokens=1000, output_tokens=1000)).total_usd
    return Router(s.deployments, s.routing, state, lambda: client._clock().timestamp(), price,
                  on_cooldown=lambda event: client.budgets.alerts.emit(event))


def _load_rules(s: Settings) -> RuleSet | None:
    if not s.rules:
        return None
    from .rules import RuleSet
    return RuleSet(s.rules, timezone=s.timezone)


def _parse_structured(call: Call, resp: ChatResponse) -> None:
    message = resp.choices[0].message if resp.choices else None
    if message is None or not message.content:
        return
    try:
        message.parsed = call.request.response_model.model_validate_json(message.content)
    except ValidationError as exc:
        raise errors.ResponseError(
            f"the answer does not match {call.request.response_model.__name__}: {describe_errors(exc)}",
            provider=call.ref.provider, model=call.ref.model, body=message.content) from exc


