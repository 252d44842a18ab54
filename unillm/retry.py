"""Retries for one model: exponential backoff with jitter, ``Retry-After`` honoured.

The common path pays nothing: one plain attempt, and tenacity is imported and
engaged only after a retryable error. Non-retryable errors (auth, bad request)
are raised at once. Every exception leaving here is already unillm's.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

from . import errors
from .config import RetrySettings

T = TypeVar("T")
Translate = Callable[[BaseException], BaseException]
OnRetry = Callable[[BaseException], None]
Left = Callable[[], float | None]   # seconds left to the call's deadline


class Retrier:
    """Runs attempts with the backoff policy; ``sleep``/``asleep`` are injectable for tests."""

    def __init__(self, policy: RetrySettings, sleep: Callable[[float], None],
                 asleep: Callable[[float], Awaitable[None]]) -> None:
        self.policy, self.sleep, self.asleep = policy, sleep, asleep

    def backoff(self, err: BaseException, attempt: int) -> float:
        """Seconds before retry number ``attempt``: Retry-After if given, else exponential + jitter."""
        retry_after = getattr(err, "retry_after", None)
        if retry_after is not None:
            return float(retry_after)
        p = self.policy
        growth: float = 2 ** (attempt - 1)
        return min(p.initial * growth, p.maximum) + random.uniform(0, p.jitter)

    def retryable(self, err: BaseException) -> bool:
        return (isinstance(err, errors.ProviderError) and err.retryable
                and (err.retry_after is None or err.retry_after <= self.policy.max_retry_after))

    def run(self, attempt: Callable[[], T], translate: Translate, max_retries: int,
            on_retry: OnRetry | None = None, left: Left | None = None) -> T:
        """``attempt()`` until it succeeds, fails for good or retries run out. ``on_retry(err)``
        is told of each failed attempt that will be tried again (before the backoff); ``left()``
        is the seconds left to the call's deadline (None: none): a retry whose wait would end
        past it is not made, the last error is raised instead."""
        try:
            return attempt()
        except Exception as exc:  # noqa: BLE001 - SDK errors are of any class: `translate` sorts them, all re-raised
            first, wait = self._first_retry(exc, translate, max_retries, left)
        import tenacity
        if on_retry is not None:
            on_retry(first)
        self.sleep(wait)
        retrying = tenacity.Retrying(sleep=self.sleep, **self._policy(tenacity, max_retries, on_retry, left))

        def again() -> T:
            try:
                return attempt()
            except Exception as exc:  # noqa: BLE001 - translated and re-raised, whatever its class
                reraise(translate(exc), exc)
        return retrying(again)

    async def arun(self, attempt: Callable[[], Awaitable[T]], translate: Translate,
                   max_retries: int, on_retry: OnRetry | None = None, left: Left | None = None) -> T:
        try:
            return await attempt()
        except Exception as exc:  # noqa: BLE001 - SDK errors are of any class: `translate` sorts them, all re-raised
            first, wait = self._first_retry(exc, translate, max_retries, left)
        import tenacity
        if on_retry is not None:
            on_retry(first)
        await self.asleep(wait)
        retrying = tenacity.AsyncRetrying(sleep=self.asleep, **self._policy(tenacity, max_retries, on_retry, left))

        async def again() -> T:
            try:
                return await attempt()
            except Exception as exc:  # noqa: BLE001 - translated and re-raised, whatever its class
                reraise(translate(exc), exc)
        return await retrying(again)

    def _first_retry(self, exc: Exception, translate: Translate, max_retries: int,
                     left: Left | None) -> tuple[BaseException, float]:
        """The first attempt raised ``exc``: its error translated, and the wait before the first
        retry. Raises that error (chained to ``exc``) when there will be no retry: not retryable,
        no retries allowed, or the wait would end past the call's deadline."""
        first = _chained(translate(exc), exc)
        if not (max_retries and self.retryable(first)):
            reraise(first, exc)
        wait = self.backoff(first, 1)
        if _past(wait, left):
            reraise(first, exc)
        return first, wait

    def _policy(self, tenacity: Any, max_retries: int, on_retry: OnRetry | None,
                left: Left | None) -> dict[str, Any]:
        """tenacity's arguments for the retries after the first."""
        waits = _Waits(self, left)
        return {"stop": tenacity.stop_after_attempt(max_retries) | waits.past_deadline, "wait": waits,
                "retry": tenacity.retry_if_exception(self.retryable), "before_sleep": _told(on_retry),
                "reraise": True}


class _Waits:
    """tenacity's wait, and a stop for a wait that would end past the call's deadline: each
    retry's backoff is drawn once (its jitter is random), so both see the same wait."""

    def __init__(self, retrier: Retrier, left: Left | None) -> None:
        self.retrier, self.left = retrier, left
        self.drawn: dict[int, float] = {}

    def __call__(self, rs: Any) -> float:
        n = rs.attempt_number
        if n not in self.drawn:
            self.drawn[n] = self.retrier.backoff(rs.outcome.exception(), n + 1)
        return self.drawn[n]

    def past_deadline(self, rs: Any) -> bool:
        return _past(self(rs), self.left)


def _past(wait: float, left: Left | None) -> bool:
    """True when a retry after ``wait`` seconds would start past the call's deadline."""
    remaining = left() if left is not None else None
    return remaining is not None and wait >= remaining


def _chained(err: BaseException, cause: BaseException) -> BaseException:
    """``err`` knowing its cause already (``on_retry`` may look at it before any raise)."""
    if err is not cause:
        err.__cause__ = cause
    return err


def _told(on_retry: OnRetry | None) -> Callable[[Any], None] | None:
    """tenacity's ``before_sleep`` hook (called when an attempt failed and will be retried)."""
    if on_retry is None:
        return None
    return lambda rs: on_retry(rs.outcome.exception())


def reraise(err: BaseException, cause: BaseException) -> NoReturn:
    """Raise ``err`` chained to ``cause`` (or ``cause`` itself when nothing was translated)."""
    if err is cause:
        raise cause
    raise err from cause


def _failure(state: Any) -> BaseException:
    """The exception of a failed attempt, from tenacity's retry state (``wait`` runs only after one)."""
    exc = state.outcome.exception()
    assert isinstance(exc, BaseException)
    return exc
