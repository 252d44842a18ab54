"""One call as it moves through the pipeline, and the ledger row it becomes.

Every outcome is a row: ok, error, cache hit, budget or rule denial, unpriced,
partial stream. Prompt and response text are kept only with ``log_content``;
API keys have no field to land in.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from . import errors
from .ledger.records import CallRecord, new_id
from .types import ChatRequest, ChatResponse, Cost, Usage

if TYPE_CHECKING:
    from .adapters.base import Adapter
    from .profiles import ModelRef


class Call:
    """Everything one attempt carries from `Client._prepare` to its ledger row."""

    __slots__ = ("request", "ref", "adapter", "tags", "requested_model", "at", "t0", "stream",
                 "price", "rule", "shadow_rule", "swapped_from", "fallback_from", "section",
                 "cache", "cache_key", "cache_status", "reservation", "ttft_ms", "remaining", "rule_ttl", "capped",
                 "call_id", "attempt", "attempt_t0", "budget_cap", "begun", "kind", "inputs", "prompt",
                 "deployment", "route", "route_tried", "route_held", "obs")

    def __init__(self, request: ChatRequest, ref: ModelRef, adapter: Adapter, tags: dict[str, str],
                 requested_model: str, at: datetime, stream: bool, section: str | None) -> None:
        self.request, self.ref, self.adapter, self.tags = request, ref, adapter, tags
        self.requested_model, self.at, self.stream, self.section = requested_model, at, stream, section
        self.t0 = time.perf_counter()      # this attempt's start (its row's latency)
        self.begun = self.t0               # the whole call's start, fallbacks included (deadlines)
        self.price: Any = None             # the Price in force, found before sending
        self.rule: str | None = None       # the applied rule
        self.shadow_rule: str | None = None
        self.swapped_from: ModelRef | None = None  # the model a rule swapped away from
        self.fallback_from: str | None = None
        self.cache: Any = None             # the cache decision for this call
        self.cache_key: str | None = None
        self.cache_status: str | None = None  # hit, miss, stored, skipped:<reason>; None = no cache
        self.reservation: Any = None       # budget reservation to settle
        self.ttft_ms: float | None = None
        self.remaining: list[str] | None = None  # fallback models not yet tried
        self.rule_ttl: float | None = None       # a rule's cache TTL override
        self.capped = False                      # max_tokens was injected by a budget
        self.call_id: str | None = None          # links the rows of one chat() (set by the first)
        self.attempt = 0                         # HTTP attempts started, fallbacks included
        self.attempt_t0 = self.t0                # when the current attempt started
        self.budget_cap: int | None = None       # ... below the model's documented maximum
        self.kind = "chat"                       # or "embed" (unillm.embeddings)
        self.inputs: int | None = None           # embed: the inputs of this vendor request
        self.prompt: Any = None                  # (messages, tools, model ref, count): see Client._count
        self.deployment: str | None = None       # the [[deployments]] entry this attempt went to
        self.route: str | None = None            # the routed model name (its deployments' group)
        self.route_tried: frozenset[str] = frozenset()  # deployments this call already used
        self.route_held: Any = False             # the routing Pick held on `deployment` until it ends
        self.obs: Any = None                     # its spans (unillm.telemetry), when traced

    def elapsed_ms(self) -> float:
        """Milliseconds since the current attempt started (the call's start before any)."""
        return (time.perf_counter() - self.attempt_t0) * 1000.0

    def next_attempt(self) -> None:
        self.attempt += 1
        self.attempt_t0 = time.perf_counter()

    def overdue(self, limit: float | None) -> bool:
        """True when ``limit`` seconds have passed since the call began (None: never)."""
        return limit is not None and time.perf_counter() - self.begun >= limit

    def time_left(self, limit: float | None) -> float | None:
        """Seconds until ``limit`` seconds have passed since the call began (None: no limit)."""
        return None if limit is None else limit - (time.perf_counter() - self.begun)

    def retarget(self, ref: ModelRef, adapter: Adapter, price: Any, fallback_from: str) -> Call:
        """The same call sent to another model (a fallback): a fresh attempt with its own row."""
        nxt = Call(self.request.retargeted(f"{ref.provider}/{ref.model}"), ref,
                   adapter, self.tags, self.requested_model, self.at, self.stream, self.section)
        nxt.price, nxt.fallback_from, nxt.rule = price, fallback_from, self.rule
        nxt.cache, nxt.call_id, nxt.attempt = self.cache, self.call_id, self.attempt
        nxt.t0 = self.t0  # one clock for the whole call: its rows' started_at stay in order
        nxt.begun = self.begun
        nxt.cache_status = self.cache_status
        nxt.kind, nxt.inputs = self.kind, self.inputs
        nxt.route_tried = self.route_tried
        nxt.obs = self.obs
        return nxt


def record_for(call: Call, status: str, *, usage: Usage | None = None, cost: Cost | None = None,
               error: BaseException | None = None, saved: Decimal | None = None,
               saved_reason: str | None = None, response: ChatResponse | None = None,
               log_content: bool = False, model: str | None = None, retried: bool = False) -> CallRecord:
    """The ledger row for one attempt of ``call`` (``retried``: it failed and is tried again)."""
    if call.call_id is None:
        call.call_id = new_id()
    latency = call.elapsed_ms()
    started = call.at + timedelta(seconds=call.attempt_t0 - call.t0) if call.attempt > 1 else call.at
    return CallRecord.from_parts(
        provider=call.ref.provider, model=model or call.ref.model, usage=usage, cost=cost,
        status=status, started_at=started, ended_at=started + timedelta(milliseconds=latency),
        call_id=call.call_id, attempt=call.attempt or 1, retried=retried,
        latency_ms=latency, ttft_ms=call.ttft_ms, requested_model=call.requested_model,
        rule=call.rule, shadow_rule=call.shadow_rule, fallback_from=call.fallback_from,
        error_class=type(error).__name__ if error is not None else None,
        saved_usd=saved or Decimal(0), saved_reason=saved_reason, fingerprint=call.cache_key,
        tags=call.tags, section=call.section, stream=call.stream, sent_model=call.ref.model,
        deployment=call.deployment,
        usage_sources=dict(usage.sources) if usage is not None else {},
        cache_status=call.cache_status, dropped_params=call.request.dropped, kind=call.kind, inputs=call.inputs,
        prompt=_prompt_text(call.request) if log_content else None,
        response=(response.content if response is not None else None) if log_content else None)


def deadline_error(call: Call, setting: str, limit: float, *, sent: bool) -> errors.TimeoutError:
    """The error of a call its deadline (``setting``, ``limit`` seconds) cut: while an attempt
    was in flight (``sent``: the vendor may bill it), or before the next one could start.
    Never retried: the deadline is the whole call's."""
    what = "it was cut off" if sent else "no further attempt was started"
    err = errors.TimeoutError(f"the call did not finish within {setting} ({limit:g}s); {what}",
                              provider=call.ref.provider, model=call.ref.model)
    err.retryable, err.sent = False, sent
    return err


def failed_status(err: BaseException) -> str:
    """``unknown`` for an attempt that timed out, lost its connection or was cancelled in flight
    (the vendor may have run, and billed, it: see README "Retries"), else ``error`` (vendors
    bill no error answer)."""
    import asyncio

    from . import errors
    if isinstance(err, asyncio.CancelledError):  # cut off mid-request (call_deadline, a task
        return "unknown"                         # cancelled): the vendor may still run it
    if isinstance(err, errors.BudgetExceededError):  # a retry its budget could not pay for
        return "budget_denied"
    if not isinstance(err, (errors.TimeoutError, errors.ConnectionError)):
        return "error"
    if isinstance(err, errors.TimeoutError) and not err.sent:
        return "error"
    cause = err.__cause__ or err.__context__
    while cause is not None:  # never connected: the vendor never saw the request
        if type(cause).__name__ in ("ConnectError", "ConnectTimeout"):
            return "error"
        cause = cause.__cause__ or cause.__context__
    return "unknown"


def stream_flag(stream: Any) -> bool:
    """A call's ``stream=``: True or False (None, as the OpenAI SDK takes it, is False); nothing
    else, since ``stream="false"`` would stream."""
    if stream is True or stream is False:
        return stream
    if stream is None:
        return False
    raise errors.InvalidRequestError(f"stream must be True or False, not {stream!r:.40}", param="stream")


def call_tags(tags: Any) -> dict[str, str]:
    """A call's ``tags=``: a mapping of names to values (numbers become text)."""
    if type(tags) is dict:  # the usual case: names and values already text, no ABC check per tag
        for k, v in tags.items():
            if type(k) is not str or type(v) is not str:
                break
        else:
            return dict(tags)
    if not isinstance(tags, Mapping):
        raise errors.InvalidRequestError(f"tags must be a dict of name -> value, not {type(tags).__name__}",
                                         param="tags")
    out = {}
    for k, v in tags.items():
        if not isinstance(k, str) or isinstance(v, (Mapping, list, tuple, set, bytes)) or v is None:
            raise errors.InvalidRequestError(f"tags: {k!r} = {v!r}; tag names are strings and values "
                                             "strings or numbers", param="tags")
        out[k] = str(v)
    return out


def _prompt_text(request: Any) -> str:
    if not isinstance(request, ChatRequest):  # an EmbedRequest: its inputs
        return str(request.prompt_text())
    return "\n".join(f"{m.role}: {m.text()}" for m in request.messages)
