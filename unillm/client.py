"""`Client`: one call pipeline over every vendor, sync and async.

``chat``/``achat`` follow DESIGN.md's twelve steps; each is a call into the module that
owns it, and every step that does no I/O is shared by both forms. `Client` is made of its
steps: the step classes of `unillm.pipeline` (one module each) and the first steps, kept here::

    1 request   validate (types.ChatRequest)                    _prepare        (here)
    2 resolve   model string -> ModelRef (profiles)             _prepare        (here)
    3 rules     swap / cap / set / deny (rules)                 _apply_rules    (here)
    5 cache     look up: a hit is replayed (streams too) at     _cache_get,     pipeline.caching
                cost 0, its saving recorded; 4 and 6-11 are      _serve_hit
                skipped
    4 estimate  the price in force, found before sending;       _priced         (here)
                the worst case (prompt + output cap) when a      _worst          pipeline.admission
                budget or a rule asks for it
    6 budget    hold the worst case in every matching budget    _admit          pipeline.admission
                (written ahead), or refuse / downgrade / fall back
    7 call      the deployment (routing), adapter + retries      _route,         pipeline.routing
                (retry), fallbacks                               _complete,      pipeline.attempts
                                                                 _open_stream
    8 usage     the vendor's, else counted (tokens)             _finish         pipeline.settling
    9 cost      Price.cost -> itemized Decimal Cost             _finish         pipeline.settling
   11 store     cache write (complete answers only)             _cache_put      pipeline.caching
   10 settle    ledger row + budget hold, one transaction       _record         pipeline.settling
   12 return    ChatResponse, or a ChatStream that runs 8-11 when it ends

The cache is read before the budget on purpose: a hit costs nothing, so it holds nothing,
and a spent budget never refuses an answer that is already paid for. The cache is written
(11) just before the row is settled (10) so that the row says what became of the answer
(its ``cache_status``: ``stored``, or why it was not).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from . import errors, sections
from .adapters.base import Adapter
from .calls import Call, call_tags, record_for, stream_flag
from .config import Settings, fields_of, load_settings, naming_file
from .pipeline.admission import Admission
from .pipeline.attempts import Attempts
from .pipeline.caching import Caching
from .pipeline.routing import Routing
from .pipeline.settling import Settling
from .profiles import ModelRef, ProviderSettings, Resolver, load_adapter_class
from .retry import Retrier
from .streaming import (
    AsyncChatStream,
    ChatStream,
)
from .telemetry import Observer
from .types import ChatResponse, Usage, build_request

if TYPE_CHECKING:  # for the annotations only: each is imported when first used
    from typing_extensions import Self

    from .budgets import Budgets
    from .cache import CacheBackend
    from .cache.policy import CachePolicy
    from .embeddings.types import EmbeddingResponse
    from .ledger import Ledger
    from .pricing import Price, PriceBook
    from .rules import RuleContext, RuleSet

Clock = Callable[[], datetime]
T = TypeVar("T")




async def _asyncio_sleep(seconds: float) -> None:
    import asyncio  # imported when an async call first waits, not by `import unillm`
    await asyncio.sleep(seconds)




def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Client(Routing, Admission, Attempts, Caching, Settling):
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
        return self._open_stream(call) if call.stream else self._complete(call)

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
        return await (self._aopen_stream(call) if call.stream else self._acomplete(call))

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
        call = Call(request, ref, self._adapter(ref.provider), {**self.settings.tags, **call_tags(tags or {})},
                    model, at or self._clock(), stream_flag(stream), sections.current())
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
        call = Call(request, ref, self._adapter(ref.provider), all_tags, model, self._clock(), stream_flag(stream),
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

    def route_status(self) -> list[dict[str, Any]]:
        """Each deployment's health, in-flight count, RPM/TPM used, latency EWMA, error rate."""
        return self._router.status() if self._router is not None else []


# ── small helpers ────────────────────────────────────────────────────────────

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
