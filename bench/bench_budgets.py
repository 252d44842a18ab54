"""What a budget adds to a call on SQLite: reservation (a hold committed before the call)
plus settlement (in the ledger row's transaction).

The vendor is an in-process stand-in that answers a canned completion, so the figure is
unillm's own work, not network noise. `bench_overhead.py` shows the same case interleaved
with real SDK calls against FakeProvider (where cold CPU caches after each HTTP call make
every step slower). Usage: python bench/bench_budgets.py [N]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(__file__).resolve().parents[1] / "tests" / "data" / "tiktoken"))

from unillm import Client  # noqa: E402
from unillm.adapters.openai import convert  # noqa: E402
from unillm.adapters.openai.adapter import OpenAIAdapter  # noqa: E402

BODY = {"id": "x", "object": "chat.completion", "created": 1, "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there"},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}}
MESSAGES = [{"role": "user", "content": "Say hello in five words."}]


class Canned(OpenAIAdapter):
    """Converts the request and a canned answer exactly as the real adapter does; no HTTP."""

    def complete(self, request, model):  # type: ignore[no-untyped-def]
        convert.to_request(request, model, self.settings)
        return convert.from_response(BODY, self.provider)


def median_us(client: Client, n: int) -> float:
    client._adapters["openai"] = Canned(client.providers["openai"])
    for _ in range(300):
        client.chat(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        client.chat(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
    with tempfile.TemporaryDirectory() as d:
        plain = median_us(Client(providers={"openai": {"api_key": "k"}}, ledger=f"sqlite:///{d}/a.db"), n)
        budget = median_us(Client(providers={"openai": {"api_key": "k"}}, ledger=f"sqlite:///{d}/b.db",
                                  budgets=[{"name": "bench", "limit_usd": 10**6, "alert_at": [0.5]}]), n)
    print(f"call with SQLite ledger        {plain:7.1f} µs")
    print(f"same with a budget             {budget:7.1f} µs")
    print(f"reservation + settlement       {budget - plain:7.1f} µs   [target <= 150]")


if __name__ == "__main__":
    main()
