"""What `unillm.observe()` adds to a raw SDK call, against FakeProvider on loopback (in its
own process, as a real vendor would be).

The same raw ``openai`` call runs with the hooks out (the SDK as shipped), with the hooks in
but nothing metered (``passthrough``: a request to a host no entry matches), and metered
(the call priced and its row written), interleaved in a random order each round so drift
hits all equally. The bar (issue 17): metered / raw SDK median latency <= 1.05, with the
ledger off and with an SQLite ledger (each metered row committed, durable, as chat()'s).
With the ledger off no row would be kept, so none is made (as chat() makes none): that arm
is what the hooks cost a client that records nothing; the SQLite arm is the metering itself
(the answer priced, its row built and committed).
With SQLite it also prints what the row's INSERT + commit alone costs (`write_floor`), each
write made right after a raw SDK call, as the meter makes it (back to back, with hot caches,
the same write costs about half): a floor no metering code can go under while the row is
durable before the call returns.
Usage: python bench/bench_observe.py [N]
"""

from __future__ import annotations

import random
import statistics
import sys
import tempfile
import time

import openai

import unillm
from bench_overhead import MESSAGES, _server  # noqa: F401 - the same server and request
from unillm import Client
from unillm.metering import hooks


def measure(n: int, ledger: str, label: str) -> None:
    with _server() as url:
        raw = openai.OpenAI(api_key="k", base_url=url + "/v1", max_retries=0)
        client = Client(providers={"openai": {"base_url": url + "/v1", "api_key": "k"}}, ledger=ledger)
        meter = unillm.observe(client).meter
        other = unillm.observe(Client(ledger="off")).meter  # meters nothing on this host
        hooks.uninstall()

        def call() -> None:
            raw.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=20)

        modes = {"raw": lambda: hooks.uninstall(), "passthrough": lambda: hooks.install(other),
                 "metered": lambda: hooks.install(meter)}
        for mode in modes.values():  # warm: connections, lazy imports, the ledger file
            mode()
            for _ in range(30):
                call()
        times: dict[str, list[float]] = {m: [] for m in modes}
        cpu: dict[str, list[float]] = {m: [] for m in modes}
        order = list(modes)
        for _ in range(n):
            random.shuffle(order)
            for name in order:
                hooks.uninstall()
                modes[name]()
                t0, c0 = time.perf_counter(), time.process_time()
                call()
                cpu[name].append(time.process_time() - c0)
                times[name].append(time.perf_counter() - t0)
        hooks.uninstall()
        floor = write_floor(client, call, n) if ledger != "off" else None
        client.close()
    med = {m: statistics.median(t) * 1e6 for m, t in times.items()}
    # CPU per call: a mean (process_time ticks are coarse), less disturbed by a busy machine
    mcpu = {m: statistics.fmean(t) * 1e6 for m, t in cpu.items()}
    bar = med["metered"] / med["raw"]
    print(f"{label:14} BAR metered/raw SDK latency {bar:5.3f}x (+{med['metered'] - med['raw']:.0f} µs on "
          f"{med['raw']:.0f} µs; bar <= 1.050: {'ok' if bar <= 1.05 else 'MISSED'})   "
          f"CPU metered/raw {mcpu['metered'] / mcpu['raw']:5.3f}x (+{mcpu['metered'] - mcpu['raw']:.0f} µs)   "
          f"passthrough/raw {med['passthrough'] / med['raw']:5.3f}x")
    if floor is not None:
        wall, cpu_us = floor
        print(f"{'':14} the row write alone (INSERT + commit, as the meter makes it): {wall:.0f} µs median "
              f"({cpu_us:.0f} µs CPU) = {wall / med['raw'] * 100:.1f}% of the raw SDK call")


def write_floor(client: Client, call: object, n: int) -> tuple[float, float]:
    """Median wall and CPU µs of `Ledger.add` for one metered row (what `Meter.finish` commits
    when no budget is in scope), each after one raw SDK ``call()`` (hooks out): the part of the
    metered call the ledger's durability costs, with the caches as a metered call leaves them."""
    from unillm.ledger.records import new_id
    last = max(client.ledger.records(), key=lambda r: r.started_at)
    rows = [last.replace(id=new_id()) for _ in range(n)]
    wall, cpu = [], []
    for rec in rows:
        call()  # type: ignore[operator]
        t0, c0 = time.perf_counter(), time.thread_time()
        client.ledger.add(rec)
        cpu.append(time.thread_time() - c0)
        wall.append(time.perf_counter() - t0)
    return statistics.median(wall) * 1e6, statistics.median(cpu) * 1e6


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    measure(n, "off", "ledger off")
    with tempfile.TemporaryDirectory() as d:
        measure(n, f"sqlite:///{d}/ledger.db", "sqlite ledger")


if __name__ == "__main__":
    main()
