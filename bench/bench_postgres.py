"""PostgreSQL ledger figures: record() median, and Client.chat overhead vs the raw SDK.

    python bench/bench_postgres.py [--records 3000] [--calls 1000] [--url postgresql://...]

Without ``--url`` a throwaway server is started from the installed Debian
packages (as tests do: ``tests/servers.py``), on loopback, and removed after.
The chat figures interleave raw openai and unillm calls against FakeProvider on
loopback, so drift hits both equally. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT / "tests" / "data" / "tiktoken"))

from unillm.ledger import CallRecord, open_store  # noqa: E402
from unillm.types import Cost, Usage  # noqa: E402

MESSAGES = [{"role": "user", "content": "Say hello in five words."}]


def bench_record(url: str, n: int, label: str) -> None:
    store = open_store(url)
    usage = Usage(input_tokens=1200, cache_read_tokens=300, output_tokens=250)
    cost = Cost(input_usd=Decimal("0.003"), cache_read_usd=Decimal("0.000075"),
                output_usd=Decimal("0.0025"), price_version="bench")
    times = []
    for i in range(n + 100):
        rec = CallRecord.from_parts(provider="openai", model="gpt-4o", usage=usage, cost=cost,
                                    latency_ms=812.5, tags={"user": f"u{i % 50}", "project": "bot"},
                                    section="agent:research/llm:query", fingerprint="f" * 64)
        t0 = time.perf_counter()
        store.record(rec)
        times.append(time.perf_counter() - t0)
    times = sorted(times[100:])  # the first hundred warm the pool and prepared statements
    t0 = time.perf_counter()
    rows = store.summary(by=["model", "day", "user"])
    t_sum = time.perf_counter() - t0
    print(f"{label:22} record() median {statistics.median(times) * 1e6:7.0f} µs   "
          f"p95 {times[int(len(times) * 0.95)] * 1e6:7.0f} µs   "
          f"summary of {n + 100} rows ({len(rows)} groups) {t_sum * 1e3:6.1f} ms")
    store.close()


def bench_chat(url: str, n: int, label: str, budgets: list | None = None) -> None:
    import openai

    from unillm import Client
    from unillm.testing import FakeProvider, Reply
    reply = Reply(text="Hello there, how are you?", usage={"input_tokens": 12, "output_tokens": 7})
    with FakeProvider(reply) as fake:
        raw = openai.OpenAI(api_key="k", base_url=fake.base_url("openai"), max_retries=0)
        client = Client(providers=fake.providers("openai"), ledger=url, budgets=budgets or [])
        for _ in range(50):  # warm both: connections, lazy imports, encoders, the pool
            raw.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
            client.chat(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
        t_raw, t_ours = [], []
        for _ in range(n):
            t0 = time.perf_counter()
            raw.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
            t1 = time.perf_counter()
            client.chat(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)
            t2 = time.perf_counter()
            t_raw.append(t1 - t0)
            t_ours.append(t2 - t1)
        client.close()
    m_raw, m_ours = statistics.median(t_raw) * 1e6, statistics.median(t_ours) * 1e6
    print(f"{label:34} raw openai {m_raw:7.0f} µs   unillm {m_ours:7.0f} µs   "
          f"added {m_ours - m_raw:6.0f} µs   ratio {m_ours / m_raw:5.3f}")


def fresh_database(server_url: str) -> str:
    from tests.servers import create_database
    return create_database(server_url)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=3000)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--url", default=None, help="a PostgreSQL server URL (default: start one)")
    args = ap.parse_args()
    server = None
    if args.url is None:
        from tests.servers import PostgresServer, pg_bindir
        bindir = pg_bindir()
        if bindir is None:
            sys.exit("PostgreSQL is not installed: apt-get install postgresql")
        server = PostgresServer(bindir).start()
        args.url = server.url()
    try:
        with tempfile.TemporaryDirectory() as d:
            bench_record(f"sqlite:///{d}/ledger.db", args.records, "sqlite")
            bench_record(fresh_database(args.url), args.records, "postgresql")
            bench_chat(f"sqlite:///{d}/chat.db", args.calls, "chat, sqlite ledger")
        bench_chat(fresh_database(args.url), args.calls, "chat, postgresql ledger")
        bench_chat(fresh_database(args.url), args.calls, "chat, postgresql ledger + budget",
                   budgets=[{"name": "bench", "limit_usd": "1000000"}])
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
