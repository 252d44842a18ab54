"""Budget holds through `unillm serve` (issue 13, finding 7): a small key budget is shared by a
burst of calls that send no max_tokens, and what refuses the rest says it is held, not spent."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from tests.test_server_support import make_served, upstream  # noqa: F401
from unillm.testing import Reply

openai = pytest.importorskip("openai")
HI = [{"role": "user", "content": "hi"}]


def test_a_one_dollar_key_admits_more_than_seven_of_twenty_concurrent_calls(upstream, tmp_path) -> None:  # noqa: F811
    upstream.default = Reply(usage={"input_tokens": 8, "output_tokens": 12}, delay=1.5)
    for served in make_served(upstream, tmp_path):
        client = served.openai(served.key(user="u", project="p", budget_usd="1", period="monthly"))
        results = burst(lambda: client.chat.completions.create(model="gpt-4o", messages=HI), 20)
        # gpt-4o: 16,384 output tokens at $10/1M, a $0.164 hold at the model's maximum: the first
        # six used to hold the whole dollar, and the rest read as spent for the month
        refused = [r for r in results if isinstance(r, openai.RateLimitError)]
        assert len(results) == 20 and len(results) - len(refused) > 7
        assert refused and all(r.code == "budget_exceeded" and "held by calls in flight" in r.message
                               for r in refused)
        # a short wait, not the month's reset (it used to say Retry-After: 2596684)
        assert all(int(r.response.headers["retry-after"]) <= 5 for r in refused)
        assert all(r.body["reason"] == "held" for r in refused)
        spent = sum(r.total_usd for r in served.client.ledger.records() if r.status == "ok")
        assert spent <= 1


def burst(call: Any, n: int) -> list[Any]:
    """``call()`` from ``n`` threads released at once; each result or the error it raised."""
    start, results, lock = threading.Barrier(n), [], threading.Lock()

    def one() -> None:
        start.wait()
        try:
            out = call()
        except openai.APIError as exc:
            out = exc
        with lock:
            results.append(out)
    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results
