"""`unillm.deadline.within`: asyncio.timeout's behaviour with one timer per loop, not one per use."""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import pytest

from unillm.deadline import _LOOPS, within

pytestmark = pytest.mark.skipif(sys.version_info < (3, 11), reason="3.10 uses asyncio.wait_for")


async def _hang() -> Any:
    await asyncio.Event().wait()


async def _soon(value: Any) -> Any:
    await asyncio.sleep(0.01)
    return value


def test_a_late_await_times_out_an_early_one_returns_and_one_timer_serves_many():
    async def scenario() -> tuple[Any, ...]:
        results = await asyncio.gather(within(_hang(), 0.05), within(_soon("ok"), 30),
                                       *(within(_soon(i), 30 + i) for i in range(50)),
                                       return_exceptions=True)
        deadlines = _LOOPS[asyncio.get_running_loop()]
        return results, deadlines._waiting, deadlines._late, len(asyncio.get_running_loop()._scheduled)

    results, waiting, late, scheduled = asyncio.run(scenario())
    assert isinstance(results[0], TimeoutError)
    assert results[1] == "ok" and results[2:] == list(range(50))
    assert waiting == {} and late == set()
    assert scheduled <= 1  # the one armed for the earliest deadline left, not 52


def test_a_cancellation_that_is_not_the_deadline_stays_a_cancellation():
    async def scenario() -> Any:
        task = asyncio.ensure_future(within(_hang(), 30))
        await asyncio.sleep(0.01)
        task.cancel()
        return (await asyncio.gather(task, return_exceptions=True))[0]

    assert isinstance(asyncio.run(scenario()), asyncio.CancelledError)


def test_nested_deadlines_the_inner_one_first_then_the_outer_one():
    async def inner_first() -> Any:
        return await within(within(_hang(), 0.02), 30)

    async def outer_first() -> Any:
        try:
            await within(within(_hang(), 30), 0.02)
        except TimeoutError:
            return asyncio.current_task().cancelling()  # type: ignore[union-attr]

    with pytest.raises(TimeoutError):
        asyncio.run(inner_first())
    assert asyncio.run(outer_first()) == 0  # the deadline's cancellation was taken back
