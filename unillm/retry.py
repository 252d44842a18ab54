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
            on_retry: OnRetry | None = None) -> T:
        """``attempt()`` until it succeeds, fails for good or retries run out. ``on_retry(err)``
        is told of each failed attempt that will be tried again (before the backoff)."""
        try:
            return attempt()
        except Exception as exc:  # noqa: BLE001 - SDK errors are of any class: `translate` sorts them, all re-raised
            first = _chained(translate(exc), exc)
            if not (max_retries and self.retryable(first)):
                reraise(first, exc)
        import tenacity
        if on_retry is not None:
            on_retry(first)
        self.sleep(self.backoff(first, 1))
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max_retries), sleep=self.sleep, reraise=True,
            wait=lambda rs: self.backoff(_failure(rs), rs.attempt_number + 1),
            retry=tenacity.retry_if_exception(self.retryable), before_sleep=_told(on_retry))

        def again() -> T:
            try:
                return attempt()
            except Exception as exc:  # noqa: BLE001 - translated and re-raised, whatever its class
                reraise(translate(exc), exc)
        return retrying(again)

    async def arun(self, attempt: Callable[[], Awaitable[T]], translate: Translate,
                   max_retries: int, on_retry: OnRetry | None = None) -> T:
        try:
            return await attempt()
        except Exception as exc:  # noqa: BLE001 - SDK errors are of any class: `translate` sorts them, all re-raised
            first = _chained(translate(exc), exc)
            if not (max_retries and self.retryable(first)):
                reraise(first, exc)
        import tenacity
        if on_retry is not None:
            on_retry(first)
        await self.asleep(self.backoff(first, 1))
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(max_retries), sleep=self.asleep, reraise=True,
            wait=lambda rs: self.backoff(_failure(rs), rs.attempt_number + 1),
            retry=tenacity.retry_if_exception(self.retryable), before_sleep=_told(on_retry))

        async def again() -> T:
            try:
                return await attempt()
            except Exception as exc:  # noqa: BLE001 - translated and re-raised, whatever its class
                reraise(translate(exc), exc)
        return await retrying(again)


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
