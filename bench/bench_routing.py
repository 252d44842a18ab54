"""The dead-primary scenario of issue 18, in real time, through the real OpenAI SDK and
FakeProvider: deployment A answers 503 on every request, deployment B is healthy.

Measured: per-call latency of ``chat("gpt-4o")`` routed over [A, B] (``strategy = "ordered"``,
so A is tried first until it cools down), against calling B directly with no routing, in
interleaved rounds, both recording to a SQLite ledger (routing state kept there too).
Reported: the median ratio after the cooldown tripped, and how many requests A received.
Usage: python bench/bench_routing.py [ROUNDS]
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
from unillm.testing import FakeProvider, Reply  # noqa: E402

MSG = [{"role": "user", "content": "hi"}]
PRICES = '[dead."gpt-4o"]\ninput = 2.5\noutput = 10\n[live."gpt-4o"]\ninput = 2.5\noutput = 10\n'


def main(rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp())
    (tmp / "p.toml").write_text(PRICES)
    with FakeProvider(Reply(status=503, error="down")) as dead, FakeProvider() as live:
        providers = {"dead": {"adapter": "openai", "base_url": dead.base_url("openai"), "api_key": "k"},
                     "live": {"adapter": "openai", "base_url": live.base_url("openai"), "api_key": "k"}}
        routed = Client(providers=providers, pricing=str(tmp / "p.toml"), ledger=f"sqlite:///{tmp}/r.db",
                        routing={"strategy": "ordered", "cooldown_after": 3, "cooldown_seconds": 30},
                        deployments=[{"model": "gpt-4o", "provider": "dead"},
                                     {"model": "gpt-4o", "provider": "live"}])
        direct = Client(providers=providers, pricing=str(tmp / "p.toml"), ledger=f"sqlite:///{tmp}/d.db")
        t0 = time.perf_counter()
        trip = []
        while len(dead.requests) < 3:  # until the cooldown trips
            s = time.perf_counter()
            routed.chat("gpt-4o", MSG)
            trip.append(time.perf_counter() - s)
        for _ in range(5):  # warm both
            routed.chat("gpt-4o", MSG)
            direct.chat("live/gpt-4o", MSG)
        r_times, d_times = [], []
        for _ in range(rounds):
            s = time.perf_counter()
            routed.chat("gpt-4o", MSG)
            r_times.append(time.perf_counter() - s)
            s = time.perf_counter()
            direct.chat("live/gpt-4o", MSG)
            d_times.append(time.perf_counter() - s)
        elapsed = time.perf_counter() - t0
        probes = int(elapsed // 30) + 1
        r, d = statistics.median(r_times), statistics.median(d_times)
        print(f"calls until cooldown tripped: {len(trip)} (first took {trip[0] * 1000:.1f} ms)")
        print(f"after: routed median {r * 1000:.2f} ms, direct median {d * 1000:.2f} ms, ratio {r / d:.3f}"
              f" over {rounds} interleaved rounds")
        allowed = 3 + probes
        print(f"dead deployment received {len(dead.requests)} requests in {elapsed:.1f}s; allowed "
              f"{allowed} (cooldown_after 3 + {probes} probe(s), one per cooldown_seconds 30): "
              f"{'within' if len(dead.requests) <= allowed else 'OVER'} the bound")
        routed.close()
        direct.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 300)
