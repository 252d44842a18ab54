"""Ledger figures: record() median, and summaries over a large generated ledger.

    python bench/bench_ledger.py [--records 5000] [--rows 1000000] [--db PATH] [--repeat 3]

Targets (issue 4): record() adds <= 100 µs median per call; a summary over 1M
rows returns in <= 2 s. Prints figures; asserts nothing. On a shared machine
use ``--repeat``: each summary then runs N times and the best and median wall
times are shown (the best is the least disturbed by other processes).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from gen_rows import generate  # noqa: E402

from unillm.ledger import CallRecord, open_store  # noqa: E402
from unillm.types import Cost, Usage  # noqa: E402


def bench_record(path: Path, n: int) -> None:
    store = open_store(f"sqlite:///{path}")
    usage = Usage(input_tokens=1200, cache_read_tokens=300, output_tokens=250)
    cost = Cost(input_usd=Decimal("0.003"), cache_read_usd=Decimal("0.000075"),
                output_usd=Decimal("0.0025"), price_version="bench")
    build, write = [], []
    for i in range(n):
        t0 = time.perf_counter()
        rec = CallRecord.from_parts(provider="openai", model="gpt-4o", usage=usage, cost=cost,
                                    latency_ms=812.5, tags={"user": f"u{i % 50}", "project": "bot"},
                                    section="agent:research/llm:query", fingerprint="f" * 64)
        t1 = time.perf_counter()
        store.record(rec)
        t2 = time.perf_counter()
        build.append(t1 - t0)
        write.append(t2 - t1)
    store.close()
    med = lambda xs: statistics.median(xs) * 1e6  # noqa: E731
    p95 = lambda xs: statistics.quantiles(xs, n=20)[-1] * 1e6  # noqa: E731
    print(f"record(): {n} calls  build median {med(build):.1f} µs  "
          f"store median {med(write):.1f} µs (p95 {p95(write):.1f} µs)  "
          f"total median {med([a + b for a, b in zip(build, write)]):.1f} µs  [target <= 100]")


def bench_summary(path: Path, rows: int, repeat: int = 1) -> None:
    store = open_store(f"sqlite:///{path}")
    have = store.last_cursor()
    store.close()
    if have < rows:
        print(f"generating {rows - have:,} rows ...", flush=True)
        secs = generate(str(path), rows - have)
        print(f"  {rows - have:,} rows in {secs:.1f} s")
    store = open_store(f"sqlite:///{path}")
    for by in ([], ["provider"], ["model", "day"], ["tag:user"], ["week", "status"],
               ["section"]):
        walls, cpus = [], []
        for _ in range(max(1, repeat)):
            t0, c0 = time.perf_counter(), time.process_time()
            out = store.summary(by)
            walls.append(time.perf_counter() - t0)
            cpus.append(time.process_time() - c0)
        spread = (f" (best of {len(walls)}; median {statistics.median(walls):.2f} s)"
                  if len(walls) > 1 else "")
        print(f"summary(by={by}): {len(out)} rows  {min(walls):.2f} s wall{spread}, "
              f"{min(cpus):.2f} s cpu  [target <= 2 s]", flush=True)
    store.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=5000)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--db", help="ledger file for the summary bench (reused if it has enough rows)")
    ap.add_argument("--repeat", type=int, default=1, help="runs per summary (best and median shown)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench_record(Path(tmp) / "record.db", args.records)
        bench_summary(Path(args.db) if args.db else Path(tmp) / "rows.db", args.rows, args.repeat)


if __name__ == "__main__":
    main()
