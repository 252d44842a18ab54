"""Per-call overhead of unillm vs the raw SDK, against FakeProvider on loopback (in its own
process, as a real vendor would be).

Both sides make the same request to the same server in the same run, interleaved
in a random order each round, so drift and position effects hit both equally. Reports medians and
the ratio. Usage: python bench/bench_overhead.py [N]
"""

from __future__ import annotations

import contextlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(__file__).resolve().parents[1] / "tests" / "data" / "tiktoken"))

import openai  # noqa: E402

from unillm import Client  # noqa: E402

MESSAGES = [{"role": "user", "content": "Say hello in five words."}]


@contextlib.contextmanager
def _server():
    """FakeProvider in another process (see _fake_server.py)."""
    proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_fake_server.py"))],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.stdin.close()
        proc.wait(10)


def measure(n: int, ledger: str, label: str, **client_kw: object) -> None:
    """``client_kw`` may add budgets, or ``temperature=0`` calls with a cache (every call a hit)."""
    kw = {"max_tokens": 20}
    if client_kw.pop("hits", False):
        kw["temperature"] = 0
    with _server() as url:
        raw = openai.OpenAI(api_key="k", base_url=url + "/v1", max_retries=0)
        client = Client(providers={"openai": {"base_url": url + "/v1", "api_key": "k"}}, ledger=ledger,
                        **client_kw)
        for _ in range(50):  # warm both: connections, lazy imports, encoders
            raw.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **kw)
            client.chat(model="gpt-4o-mini", messages=MESSAGES, **kw)
        calls = {
            "raw": lambda: raw.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **kw),
            "ours": lambda: client.chat(model="gpt-4o-mini", messages=MESSAGES, **kw),
        }
        times: dict[str, list[float]] = {"raw": [], "ours": []}
        order = list(calls)
        for _ in range(n):
            random.shuffle(order)  # which goes first alternates at random: no position bias
            for name in order:
                t0 = time.perf_counter()
                calls[name]()
                times[name].append(time.perf_counter() - t0)
        t_raw, t_ours = times["raw"], times["ours"]
    m_raw, m_ours = statistics.median(t_raw) * 1e6, statistics.median(t_ours) * 1e6
    print(f"{label:28} raw openai {m_raw:8.0f} µs   unillm {m_ours:8.0f} µs   "
          f"added {m_ours - m_raw:6.0f} µs   ratio {m_ours / m_raw:5.3f}")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    measure(n, "off", "chat, ledger off")
    with tempfile.TemporaryDirectory() as d:
        measure(n, f"sqlite:///{d}/ledger.db", "chat, sqlite ledger")
    with tempfile.TemporaryDirectory() as d:
        measure(n, f"sqlite:///{d}/ledger.db", "chat, sqlite + budget",
                budgets=[{"name": "bench", "limit_usd": 10**6}])
    with tempfile.TemporaryDirectory() as d:
        measure(n, f"sqlite:///{d}/ledger.db", "cache hit, memory", cache="memory", hits=True)
    with tempfile.TemporaryDirectory() as d:
        measure(n, f"sqlite:///{d}/ledger.db", "cache hit, disk", cache=f"disk:///{d}/cache", hits=True)
    with tempfile.TemporaryDirectory() as d:
        measure(n, "off", "cache hit, disk, no ledger", cache=f"disk:///{d}/cache", hits=True)


if __name__ == "__main__":
    main()
