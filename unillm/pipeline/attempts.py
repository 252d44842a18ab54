"""Step 7: the call to the vendor. Each attempt under the call's deadline, retried by
`unillm.retry`, every retried attempt a row; on failure the next deployment, then the next
model of the ``[[fallbacks]]`` chain; streams opened inside the same loop."""

from __future__ import annotations

import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .. import errors
from ..calls import Call, deadline_error, failed_status, record_for
from ..metering.own import OWN
from ..streaming import (
    Accumulator,
    AsyncChatStream,
    ChatStream,
    afirst_chunk,
    aprepend,
    first_chunk,
    prepend,
)
from ..types import ChatResponse
from .steps import Steps

#: errors after which the next model of a [[fallbacks]] chain is tried
_FALLBACK_ON = (errors.RateLimitError, errors.ServerError, errors.TimeoutError, errors.ConnectionError,
                errors.ContextWindowExceededError, errors.ResponseError)


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
        from ..deadline import within
        return await within(run, seconds)  # asyncio.timeout without a timer per call
    return await asyncio.wait_for(run, seconds)  # pragma: no cover - Python 3.10


class Attempts(Steps):
    def _translate(self, call: Call, exc: BaseException) -> BaseException:
        """The one boundary where SDK exceptions become unillm's, the provider's secrets redacted."""
        return call.adapter.translate(exc, call.ref.model)

    def _attempt(self, call: Call, run: Callable[[float | None], Any]) -> Any:
        """``run(timeout)`` with retries; every HTTP attempt is counted, and each one retried is
        a row. No attempt runs past the call's deadline (see `_attempt_timeout`)."""
        def once() -> Any:
            timeout, started = self._begin_attempt(call)
            try:
                return run(timeout)
            except Exception as exc:
                self._check_cut(call, exc, timeout)
                raise
            finally:
                self._end_attempt(started)
        return self._retrier.run(once, *self._retry_hooks(call))

    def _aattempt(self, call: Call, run: Callable[[float | None], Awaitable[Any]]) -> Awaitable[Any]:
        async def once() -> Any:
            timeout, started = self._begin_attempt(call)
            try:
                return await run(timeout)
            except Exception as exc:
                self._check_cut(call, exc, timeout)
                raise
            finally:
                self._end_attempt(started)
        return self._retrier.arun(once, *self._retry_hooks(call))

    def _begin_attempt(self, call: Call) -> tuple[float | None, tuple[Any, Any]]:
        """An attempt starts: its timeout (`_attempt_timeout`), counted, marked as unillm's own
        request (observe() leaves it alone), its span opened when tracing."""
        timeout = self._attempt_timeout(call)
        call.next_attempt()
        own = OWN.set(True)
        return timeout, (own, self._obs.attempt(call) if self._obs.tracer else None)

    def _end_attempt(self, started: tuple[Any, Any]) -> None:
        own, traced = started
        OWN.reset(own)
        self._obs.sent(traced)

    def _retry_hooks(self, call: Call) -> tuple[Any, ...]:
        """What the retrier is told of a call: how errors translate, how many retries, the row of
        a retried attempt, the time left."""
        return (lambda e: self._translate(call, e), self._max_retries(call),
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
