"""What budgets add to a call on SQLite: admission (a hold committed before the call) plus
settlement (in the ledger row's transaction), for 1, 10 and 100 budgets that all match the
call's tags.

The vendor is an in-process stand-in that answers a canned completion, so the figure is
unillm's own work, not network noise. Configurations are interleaved call by call, in an order
reshuffled for every call; each figure is the median over rounds of the per-round median CPU
time of a call
(``time.thread_time``: on a loaded machine wall time mostly measures the scheduler).
`bench_overhead.py` shows the same case interleaved with real SDK calls against FakeProvider.
Usage: python bench/bench_budgets.py [CALLS_PER_ROUND] [ROUNDS]
"""

from __future__ import annotations

import os
import random
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
TAGS = {"project": "bench", "user": "u1"}


class Canned(OpenAIAdapter):
    """Converts the request and a canned answer exactly as the real adapter does; no HTTP."""

    def complete(self, request, model, timeout=None):  # type: ignore[no-untyped-def]
        convert.to_request(request, model, self.settings)
        return convert.from_response(BODY, self.provider)


def budgets(n: int) -> list[dict[str, object]]:
    """``n`` budgets, every one matching TAGS (a tag scope, per-user or global)."""
    scopes: list[dict[str, str]] = [{"project": "bench"}, {"user": "*"}, {}]
    return [{"name": f"b{i}", "limit_usd": 10**6, "alert_at": [0.5], "scope": scopes[i % 3]} for i in range(n)]


def client(d: str, name: str, n: int) -> Client:
    c = Client(providers={"openai": {"api_key": "k"}}, ledger=f"sqlite:///{d}/{name}.db",
               budgets=budgets(n) if n else None)
    c._adapters["openai"] = Canned(c.providers["openai"])
    return c


def one_call(c: Client) -> float:
    t0 = time.thread_time()
    c.chat(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20, tags=TAGS)
    return time.thread_time() - t0


def one_round(c: Client, calls: int) -> float:
    return statistics.median(one_call(c) for _ in range(calls)) * 1e6


def interleaved_round(clients: dict[int, Client], calls: int) -> dict[int, float]:
    """``calls`` calls of each configuration, one of each in turn (a fresh order every time),
    so a burst of load on the machine falls on every configuration alike; per-configuration
    medians in µs."""
    samples: dict[int, list[float]] = {n: [] for n in clients}
    order = list(clients)
    for _ in range(calls):
        random.shuffle(order)
        for n in order:
            samples[n].append(one_call(clients[n]))
    return {n: statistics.median(v) * 1e6 for n, v in samples.items()}


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    counts = [0, 1, 10, 100]
    with tempfile.TemporaryDirectory() as d:
        clients = {n: client(d, f"b{n}", n) for n in counts}
        for c in clients.values():
            one_round(c, 100)  # warm up: encodings, prepared statements, pages
        seen: dict[int, list[float]] = {n: [] for n in counts}
        for _ in range(rounds):
            for n, us in interleaved_round(clients, calls).items():
                seen[n].append(us)
        for c in clients.values():
            c.close()
    med = {n: statistics.median(v) for n, v in seen.items()}
    plain = med[0]
    print(f"call with SQLite ledger        {plain:8.1f} µs CPU")
    for n in counts[1:]:
        print(f"same with {n:3d} budget(s)       {med[n]:8.1f} µs CPU   adds {med[n] - plain:7.1f} µs")
    one = med[1] - plain
    print(f"1 budget adds                  {one:8.1f} µs   [bar <= 150]")
    print(f"100 budgets / 1 budget (added) {(med[100] - plain) / one:8.2f}x   [bar <= 2.0]")
    print(f"100 budgets / 1 budget (call)  {med[100] / med[1]:8.2f}x")


if __name__ == "__main__":
    main()
