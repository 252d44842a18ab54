"""Event-loop lag under 100 concurrent ``achat``: does unillm's I/O block the loop?

One event loop runs 100 concurrent calls against FakeProvider (in its own process, as a
real vendor would be) while a ticker task asks to wake every 1 ms and records how late
it woke (actual minus scheduled). Blocking I/O on the loop (a ledger commit fsynced
with ``synchronous=full``, a diskcache lookup, a budget hold) shows up as lag.

Each phase keeps 100 calls in flight (100 workers, started over the first ``LATENCY``
seconds, each making ``CALLS_PER_WORKER`` calls in turn; the vendor answers after
``LATENCY``), ``ROUNDS`` times with fresh prompts, all phases in the same run:

* ``raw openai``   the official ``openai.AsyncOpenAI`` client alone (the floor: the SDK,
                   the loop and this machine's load);
* ``unillm miss``  ``Client.achat`` with an SQLite ledger at ``synchronous=full``, a disk
                   cache and a budget: a budget hold, the call, a cache store, a ledger row;
* ``unillm hit``   the same prompts again: a cache lookup and a ``cache_hit`` row.

Reports max and p99 lag and calls/s per phase. Usage: python bench/bench_loop_lag.py [ROUNDS]
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(__file__).resolve().parents[1] / "tests" / "data" / "tiktoken"))

import openai

from unillm import Client

CONCURRENCY = 100
CALLS_PER_WORKER = 3
#: the vendor's latency: 100 calls in flight at 2 s each is 50 calls/s, a load the raw SDK
#: alone handles with the loop mostly idle (at no latency the SDK's own CPU saturates the
#: loop and every figure is the machine's, not the I/O's)
LATENCY = 2.0
TICK = 0.001


@contextlib.contextmanager
def _server() -> Iterator[str]:
    """FakeProvider in another process (see _fake_server.py), answering after ``LATENCY``."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_fake_server.py")), str(LATENCY)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdin is not None
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.wait(10)


async def _ticker(lags: list[float], stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        due = loop.time() + TICK
        await asyncio.sleep(TICK)
        lags.append(max(loop.time() - due, 0.0))
        if os.environ.get("LAGDEBUG") and lags[-1] > 0.1:
            print(f"lag {lags[-1]:.3f} at {time.perf_counter():.3f}", file=sys.stderr)


async def _phase(call: Callable[[str], Awaitable[object]], tags: list[list[str]]) -> tuple[list[float], float]:
    """One worker per list of ``tags``, all running at once, each making its calls in turn
    (so ``len(tags)`` calls are always in flight), with the ticker running throughout;
    (lags in seconds, calls per second)."""
    lags: list[float] = []
    stop = asyncio.Event()
    ticker = asyncio.create_task(_ticker(lags, stop))
    await asyncio.sleep(0.01)  # the ticker is running before the first call starts

    async def worker(n: int, mine: list[str]) -> None:
        await asyncio.sleep(n * LATENCY / len(tags))  # arrivals spread out, as a server's are
        loop = asyncio.get_running_loop()
        for tag in mine:  # one call per LATENCY at most: cache hits arrive at the same rate
            start = loop.time()
            await call(tag)
            await asyncio.sleep(start + LATENCY - loop.time())

    t0 = time.perf_counter()
    if os.environ.get("LAGDEBUG"):
        print(f"phase {call.__name__} at {t0:.3f}", file=sys.stderr)
    await asyncio.gather(*(worker(n, t) for n, t in enumerate(tags)))
    elapsed = time.perf_counter() - t0
    stop.set()
    await ticker
    return lags, sum(map(len, tags)) / elapsed


def _p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[98] if len(xs) > 1 else xs[0]


def _messages(tag: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"Say hello in five words. ({tag})"}]


async def _run(url: str, d: str, rounds: int) -> dict[str, list[tuple[list[float], float]]]:
    raw = openai.AsyncOpenAI(api_key="k", base_url=url + "/v1", max_retries=0)
    client = Client(providers={"openai": {"base_url": url + "/v1", "api_key": "k"}},
                    ledger=f"sqlite:///{d}/ledger.db?synchronous=full", cache=f"disk:///{d}/cache",
                    budgets=[{"name": "bench", "limit_usd": 10**6}])
    kw = {"max_tokens": 20, "temperature": 0}
    out: dict[str, list[tuple[list[float], float]]] = {"raw openai": [], "unillm miss": [], "unillm hit": []}

    def ours(tag: str) -> Awaitable[object]:
        return client.achat(model="gpt-4o-mini", messages=_messages(tag), **kw)

    def theirs(tag: str) -> Awaitable[object]:
        return raw.chat.completions.create(model="gpt-4o-mini", messages=_messages(tag), **kw)

    try:
        await asyncio.gather(*(ours(f"warm {i}") for i in range(CONCURRENCY)))
        await asyncio.gather(*(theirs(f"warm {i}") for i in range(CONCURRENCY)))
        for r in range(rounds):
            tags = [[f"r{r} w{w} c{c}" for c in range(CALLS_PER_WORKER)] for w in range(CONCURRENCY)]
            out["raw openai"].append(await _phase(theirs, tags))
            out["unillm miss"].append(await _phase(ours, tags))
            out["unillm hit"].append(await _phase(ours, tags))
    finally:
        await raw.close()
        await client.aclose()
    return out


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    with _server() as url, tempfile.TemporaryDirectory() as d:
        results = asyncio.run(_run(url, d, rounds))
    print(f"{CONCURRENCY} concurrent workers x {CALLS_PER_WORKER} calls x {rounds} rounds; SQLite ledger synchronous=full, "
          f"disk cache, one budget")
    for name, runs in results.items():
        lags = [lag for run, _ in runs for lag in run]
        rate = statistics.median(r for _, r in runs)
        print(f"{name:12}  lag p99 {_p99(lags) * 1e3:7.2f} ms   max {max(lags) * 1e3:7.2f} ms   "
              f"median {statistics.median(lags) * 1e3:5.2f} ms   {rate:7.0f} calls/s   ({len(lags)} ticks)")


if __name__ == "__main__":
    main()
