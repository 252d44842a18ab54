"""`Client.embed` / `aembed`: the chat pipeline's steps, for vectors.

::

    1 request   validate (types.build_embed_request)                  _prepare
    2 resolve   model -> ModelRef; the profile must serve embeddings   _prepare
    3 rules     rules with ``when.kind = "embed"``: use / deny / ttl   _apply_rules
    4 price     the price in force, before sending (never a silent $0) Client._price_of
      batch     the inputs cut into the vendor's most a request        _batches
                (``[capabilities] embed_max_inputs``); each batch is one vendor request,
                and steps 5-10 run per batch: one ledger row per vendor request
    5 cache     a batch seen before is replayed exactly (its vectors), cost 0
    6 budget    hold the batch's input tokens (counted exactly with tiktoken for OpenAI's
                models, else estimated with a margin) in every matching budget
    7 call      adapter.embed + retries + [[fallbacks]] (Client._attempt, _with_fallbacks)
    8 usage     the vendor's count, else counted (marked as an estimate where it is one)
    9 cost      Price.cost(usage): input tokens at the model's rate
   11 store     cache write (the vectors)
   10 settle    ledger row (kind "embed", inputs = the batch's size) + budget hold
   12 return    one EmbeddingResponse for all batches: data in input order, cost summed
                over the rows (a replayed batch costs 0), usage over the batches (a replayed
                one reports the usage it was made with, as a chat cache hit does),
                ``ledger_ids`` every row

A batch that fails ends the call with its error; the batches before it were paid for and
stay recorded. Batches are sent one after another (async too).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast

from .. import errors, sections
from ..calls import Call, call_tags, record_for
from ..types import ChatRequest, Cost, Usage
from .types import EmbeddingResponse, EmbedRequest, Vectors, build_embed_request, make_data

if TYPE_CHECKING:
    from ..budgets import Worst
    from ..cache.codec import CachedEntry
    from ..client import Client
    from ..pipeline.steps import Steps
    from ..profiles import ModelRef
    from ..rules import RuleSet

#: cache key schema of embedding entries; bump when what shares a key changes
KEY_VERSION = 1


class _Plan:
    """What every batch of one embed call shares."""

    __slots__ = ("cache", "call_id", "price", "ref", "request", "requested", "rule", "rule_ttl",
                 "shadow", "swapped_from", "tags")

    def __init__(self, request: EmbedRequest, ref: ModelRef, tags: dict[str, str], requested: str) -> None:
        self.request, self.ref, self.tags, self.requested = request, ref, tags, requested
        self.price: Any = None
        self.rule: str | None = None
        self.rule_ttl: float | None = None
        self.shadow: str | None = None
        self.swapped_from: ModelRef | None = None
        self.cache: Any = None
        self.call_id: str | None = None


class _Done:
    """The outcome of one batch: its vectors, usage, cost and row."""

    __slots__ = ("cached", "cost", "ledger_id", "model", "provider", "usage", "vectors")

    def __init__(self, vectors: list[list[float]], usage: Usage, cost: Cost | None, call: Call, model: str,
                 ledger_id: str | None, cached: bool) -> None:
        self.vectors, self.usage, self.cost, self.model = vectors, usage, cost, model
        self.provider, self.ledger_id, self.cached = call.ref.provider, ledger_id, cached


# ── the two drivers ──────────────────────────────────────────────────────────

def embed(client: Client, model: str, input: Any, params: dict[str, Any],  # noqa: A002
          tags: Mapping[str, str] | None, cache: Any) -> EmbeddingResponse:
    plan = _prepare(client, model, input, params, tags, cache)
    done: list[_Done] = []
    for call in _batches(client, plan):
        entry = _cache_get(client, call)
        if entry is not None:
            done.append(_serve_hit(client, call, entry))
            continue
        call = client._admit(call) if client.budgets else call
        call, vectors = client._with_fallbacks(call, lambda c: client._attempt(
            c, lambda t: c.adapter.embed(_req(c), c.ref.model, timeout=t)))
        done.append(_finish(client, call, vectors))
    return _response(plan, done)


async def aembed(client: Client, model: str, input: Any, params: dict[str, Any],  # noqa: A002
                 tags: Mapping[str, str] | None, cache: Any) -> EmbeddingResponse:
    plan = _prepare(client, model, input, params, tags, cache)
    done: list[_Done] = []
    for call in _batches(client, plan):
        key = _read_key(call)
        if key is not None:
            entry = _seen(call, await client.cache.aget(key))
            if entry is not None:
                done.append(await client._io(_serve_hit, client, call, entry))
                continue
        call = await client._io(client._admit, call) if client.budgets else call
        call, vectors = await client._awith_fallbacks(call, lambda c: client._aattempt(
            c, lambda t: c.adapter.aembed(_req(c), c.ref.model, timeout=t)))
        done.append(await client._io(_finish, client, call, vectors))
    return _response(plan, done)


# ── steps 1-4 ────────────────────────────────────────────────────────────────

def _prepare(client: Client, model: str, input: Any, params: dict[str, Any],  # noqa: A002
             tags: Mapping[str, str] | None, cache: Any) -> _Plan:
    request = build_embed_request(model, input, params)
    ref = client.resolve(model)
    all_tags = {**client.settings.tags, **call_tags(tags)} if tags is not None else dict(client.settings.tags)
    plan = _Plan(request, ref, all_tags, model)
    rules = _embed_rules(client)
    if rules is not None:
        _apply_rules(client, plan, rules)
    _check_serves(client, plan.ref)
    probe = _call(client, plan, plan.request, len(request.input))
    plan.price = client._price_of(probe, plan.ref)   # a missing price: recorded and raised here
    decision = client.cache_policy.decide(cast(ChatRequest, request), cache)
    if plan.rule_ttl is not None and decision.write:
        from dataclasses import replace
        decision = replace(decision, ttl=plan.rule_ttl)
    plan.cache = decision
    if client._recording:
        from ..ledger.records import new_id
        plan.call_id = new_id()
    return plan


def _check_serves(client: Client, ref: ModelRef) -> None:
    settings = client.providers[ref.provider]
    if not settings.capabilities.embeddings:
        serving = sorted(n for n, p in client.providers.items() if p.capabilities.embeddings)
        raise errors.InvalidRequestError(
            f"provider {ref.provider!r} serves no embeddings (model {ref.model!r}); providers with "
            f"embeddings: {', '.join(serving)} (an OpenAI-compatible profile that has them sets "
            "[capabilities] embeddings = true)", param="model")


def _embed_rules(client: Client) -> RuleSet | None:
    """The configured rules written for embeddings (``when.kind = "embed"``), in their order."""
    rules = client.rules
    if rules is None:
        return None
    cached = getattr(client, "_embed_rules", None)
    if cached is None or cached[0] is not rules:
        from ..rules import RuleSet
        picked = [(r, i) for r, i in zip(rules.rules, rules.indexes) if r.when.kind == "embed"]
        subset = RuleSet([r for r, _ in picked], timezone=client.settings.timezone,
                         indexes=[i for _, i in picked]) if picked else None
        cached = (rules, subset)
        client._embed_rules = cached  # type: ignore[attr-defined]
    result: RuleSet | None = cached[1]
    return result


def _apply_rules(client: Client, plan: _Plan, rules: RuleSet) -> None:
    from ..rules import RuleContext
    text = plan.request.prompt_text()
    probe = ChatRequest.model_construct(model=plan.requested, messages=_messages(text), tools=None,
                                        response_format=None)
    call = _call(client, plan, plan.request, len(plan.request.input))
    ctx = RuleContext(probe, plan.ref, tags=plan.tags, now=call.at, kind="embed",
                      prompt_tokens=lambda: _tokens(client, plan.ref, plan.request.input)[0],
                      estimated_cost=lambda: _estimate(client, call),
                      budget_used=lambda: client.budgets.used_fraction(plan.tags) if client.budgets else None)
    decision = rules.evaluate(ctx)
    if not decision:
        return
    if decision.shadow:
        plan.shadow = ",".join(d.rule for d in decision.shadow if d.rule)
    if decision.rule is None:
        return
    plan.rule = call.rule = decision.rule
    if decision.deny is not None:
        err = errors.RuleDeniedError(decision.rule, decision.deny)
        client._record(record_for(call, "rule_denied", error=err))
        raise err
    plan.rule_ttl = decision.cache_ttl
    if decision.use is not None:
        ref = client.resolve(decision.use)
        if ref != plan.ref:
            plan.swapped_from, plan.ref = plan.ref, ref
    if client.budgets.alerts.wants("optimization.applied"):  # as a chat rule's (Client._apply_rules)
        client.budgets.alerts.emit({"event": "optimization.applied", "rule": decision.rule, "kind": "embed",
                                    "requested_model": plan.requested, "model": str(plan.ref),
                                    "swapped_from": str(plan.swapped_from) if plan.swapped_from else None,
                                    "tags": dict(plan.tags), "at": call.at.isoformat()})


def _messages(text: str) -> list[Any]:
    from ..types import Message
    return [Message(role="user", content=text)]


def _estimate(client: Client, call: Call) -> Decimal | None:
    try:
        price = client.pricebook.price(call.ref.provider, call.ref.model, call.at)
    except errors.MissingPriceError:
        return None
    return price.cost(Usage(input_tokens=_tokens(client, call.ref, _req(call).input)[0])).total_usd


def _call(client: Client, plan: _Plan, request: EmbedRequest, inputs: int) -> Call:
    call = Call(cast(ChatRequest, request), plan.ref, client._adapter(plan.ref.provider), plan.tags,
                plan.requested, client._clock(), False, sections.current())
    call.kind, call.inputs = "embed", inputs
    call.rule, call.swapped_from, call.price, call.call_id = plan.rule, plan.swapped_from, plan.price, plan.call_id
    call.cache, call.shadow_rule = plan.cache, plan.shadow
    call.cache_status = plan.cache.status if plan.cache is not None and client.cache_policy.enabled else None
    return call


def _slices(client: Client, ref: ModelRef, inputs: list[str]) -> list[tuple[int, int]]:
    """``(start, stop)`` of each vendor request: at most ``embed_max_inputs`` inputs and, where
    the profile sets ``embed_max_tokens``, at most that many tokens together. A short input
    is weighed by its UTF-8 length (never fewer bytes than tokens), a long one is counted."""
    caps = client.providers[ref.provider].capabilities
    size, limit = caps.embed_max_inputs, caps.embed_max_tokens
    if limit is None:
        return [(s, min(s + size, len(inputs))) for s in range(0, len(inputs), size)]
    out: list[tuple[int, int]] = []
    start, used = 0, 0
    for i, text in enumerate(inputs):
        weight = len(text.encode("utf-8"))
        if weight > 256:
            weight = min(weight, _tokens(client, ref, [text])[0])
        if i > start and (i - start >= size or used + weight > limit):
            out.append((start, i))
            start, used = i, 0
        used += weight
    out.append((start, len(inputs)))
    return out


def _batches(client: Client, plan: _Plan) -> Any:
    """One `Call` per vendor request, made as it is needed (each has its own clock)."""
    import time
    inputs = plan.request.input
    for start, stop in _slices(client, plan.ref, inputs):
        request = plan.request if start == 0 and stop == len(inputs) else plan.request.batch(start, stop)
        call = _call(client, plan, request, stop - start)
        call.adapter.warm(False)
        call.t0 = call.begun = time.perf_counter()
        yield call


def _req(call: Call) -> EmbedRequest:
    return cast(EmbedRequest, call.request)


# ── step 6: what a batch may cost at most ────────────────────────────────────

def _tokens(client: Steps, ref: ModelRef, texts: list[str]) -> tuple[int, bool]:
    """(input tokens, exact): tiktoken with the model's own encoding (OpenAI's models), else
    the profile's ``tokenizer`` (an estimate), else the offline heuristic (an estimate)."""
    from ..tokens import count_text, encoding_for, heuristic_count
    encoding, exact = encoding_for(ref.model, client.providers[ref.provider])
    total = 0
    for text in texts:
        n = count_text(text, encoding)
        if n is None:
            return sum(heuristic_count(t) for t in texts), False
        total += n
    return total, exact


def worst(client: Steps, call: Call) -> Worst:
    """The batch's worst case for a budget hold: its input tokens (an estimate gets the
    budgets' margin), no output."""
    from ..budgets import Worst
    tokens, exact = _tokens(client, call.ref, _req(call).input)
    return Worst.of(call.price, tokens, exact=exact, max_tokens=1, model_max=1)


# ── steps 5 and 11: the cache ────────────────────────────────────────────────

def cache_key(ref: ModelRef, request: EmbedRequest, namespace: str) -> str:
    """sha256 over what shapes the vectors: provider, model, inputs and options (not
    ``encoding_format``, which only changes how they are written, nor ``user``)."""
    body = {"v": KEY_VERSION, "kind": "embed", "ns": namespace, "provider": ref.provider, "model": ref.model,
            "input": request.input, "dimensions": request.dimensions, "input_type": request.input_type,
            "task_type": request.task_type, "extra": request.extra}
    text = json.dumps(body, ensure_ascii=True, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("ascii")).hexdigest()


def _read_key(call: Call) -> str | None:
    if call.cache is None or not call.cache.read:
        return None
    call.cache_key = cache_key(call.ref, _req(call), call.cache.namespace)
    return call.cache_key


def _seen(call: Call, entry: CachedEntry | None) -> CachedEntry | None:
    if entry is not None and entry.vectors is None:
        entry = None  # not an embeddings entry (cannot share a key; never served as one)
    call.cache_status = "miss" if entry is None else "hit"
    return entry


def _cache_get(client: Client, call: Call) -> CachedEntry | None:
    key = _read_key(call)
    return None if key is None else _seen(call, client.cache.get(key))


def _cache_put(client: Client, call: Call, vectors: list[list[float]], usage: Usage, model: str,
               cost: Cost | None) -> str | None:
    decision = call.cache
    if decision is None or not decision.write:
        return call.cache_status
    from ..cache.codec import make_entry
    from ..types import ChatResponse
    key = call.cache_key if call.fallback_from is None and call.cache_key else \
        cache_key(call.ref, _req(call), decision.namespace)
    shell = ChatResponse(id="embedding", created=0, model=model, choices=[], usage=usage,
                         provider=call.ref.provider, cost=cost)
    entry = make_entry(shell, namespace=decision.namespace).model_copy(update={"vectors": vectors})
    client.cache.set(key, entry, decision.ttl)
    return "stored"


def _serve_hit(client: Client, call: Call, entry: CachedEntry) -> _Done:
    """A hit costs nothing: no budget is charged; its row records what it saved."""
    cost = Cost(price_version="cache hit")
    ledger_id = None
    if client._recording:
        rec = record_for(call, "cache_hit", cost=cost, saved=entry.cost_usd, saved_reason="cache",
                         log_content=client.settings.log_content, model=entry.model)
        client._record(rec)
        ledger_id = rec.id
    usage = entry.response.usage or Usage()
    return _Done(list(entry.vectors or []), usage, cost, call, entry.model, ledger_id, True)


# ── steps 8-10 ───────────────────────────────────────────────────────────────

def _finish(client: Client, call: Call, got: Vectors) -> _Done:
    """Usage (counted when the vendor gave none), cost, cache write, ledger row."""
    usage = got.usage
    if usage is None:
        tokens, exact = _tokens(client, call.ref, _req(call).input)
        usage = Usage(input_tokens=tokens, source="tiktoken" if exact else "estimate")
    price = call.price
    cost = price.cost(usage) if price is not None else None
    saved, reason = client._rule_saving(call, usage, cost)
    status = "ok" if cost is not None else "unpriced"
    call.cache_status = _cache_put(client, call, got.vectors, usage, call.ref.model, cost)
    ledger_id = None
    if client._recording:
        rec = record_for(call, status, usage=usage, cost=cost, saved=saved, saved_reason=reason,
                         log_content=client.settings.log_content, model=call.ref.model)
        client._record(rec, call, cost=cost, tokens=usage.total_tokens)
        ledger_id = rec.id
    return _Done(got.vectors, usage, cost, call, call.ref.model, ledger_id, False)


def _response(plan: _Plan, done: list[_Done]) -> EmbeddingResponse:
    vectors = [v for d in done for v in d.vectors]
    paid = [d for d in done if not d.cached]
    # a replayed batch reports the usage it was made with, as a chat cache hit does (at cost 0)
    tokens = sum(d.usage.input_tokens for d in done)
    sources = {d.usage.source for d in done}
    source = "estimate" if "estimate" in sources else "tiktoken" if "tiktoken" in sources else "provider"
    costs = [d.cost for d in done]
    cost = None if any(c is None for c in costs) else _sum_costs([c for c in costs if c is not None])
    ids = [d.ledger_id for d in done if d.ledger_id is not None]
    resp = EmbeddingResponse.model_construct(
        object="list", data=make_data(vectors, plan.request.encoding_format),
        model=done[-1].model if done else plan.ref.model,
        usage=Usage(input_tokens=tokens, source=source), provider=done[-1].provider if done else plan.ref.provider,
        cost=cost,
        cached=bool(done) and all(d.cached for d in done), rule=plan.rule, requested_model=plan.requested,
        ledger_id=ids[0] if ids else None, ledger_ids=ids, requests=len(paid),
        cache_status=_status(done, plan))
    return resp


def _status(done: list[_Done], plan: _Plan) -> str | None:
    if plan.cache is None or not plan.cache.active:
        return None
    hits = sum(d.cached for d in done)
    return "hit" if hits == len(done) else "partial-hit" if hits else "miss"


def _sum_costs(costs: list[Cost]) -> Cost:
    versions = sorted({c.price_version for c in costs if c.price_version and c.price_version != "cache hit"})
    return Cost(input_usd=sum((c.input_usd for c in costs), Decimal(0)),
                cache_read_usd=sum((c.cache_read_usd for c in costs), Decimal(0)),
                cache_write_usd=sum((c.cache_write_usd for c in costs), Decimal(0)),
                output_usd=sum((c.output_usd for c in costs), Decimal(0)),
                other_usd=sum((c.other_usd for c in costs), Decimal(0)),
                price_version=versions[0] if len(versions) == 1 else ("; ".join(versions) or "cache hit"))
