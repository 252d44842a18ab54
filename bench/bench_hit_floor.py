"""What a cache hit costs next to a raw SDK call, in the default setup and in others.

Issue 21's bar: a *default* cache hit <= 0.10x a raw loopback call. "Default" is what a
``Client()`` does once a cache is turned on with ``cache = "disk"`` and nothing else set:
the disk cache (diskcache, in ``$UNILLM_HOME/cache``) and the default ledger (SQLite,
``$UNILLM_HOME/ledger.db``), whose hit rows go through the group-commit writer
(`unillm.ledger.batch`). Here ``$UNILLM_HOME`` is a temporary directory.

Every subject runs in the same interleaved rounds (each round in a fresh random order, so
drift hits them all alike); the table shows the median wall time per call, that as a share
of the raw call's median, and the mean process CPU per call (which counts the hit writer's
batched commits on its thread, amortized) with its share of the raw call's. On a loaded
machine FakeProvider's process waits for a core and the raw call's wall time grows: read
the wall ratio from a quiet run (and the load printed with it), the CPU one from any. The raw call is the openai SDK against
FakeProvider in its own process over 127.0.0.1.

Rows besides the default: the other cache/ledger pairs, and floors written as bare as
Python allows that no implementation can avoid:
  * lookup: fingerprint the arguments (one JSON dump), find the entry in a dict, decode it
    and copy the response (a caller may change what it gets back);
  * durable row: a UUIDv7, two timestamps, one JSON line, one ``os.write`` to an
    append-only file (the cheapest write that survives SIGKILL);
  * SQLite row: the ledger's own synchronous INSERT (WAL, autocommit), as hits paid
    before the group-commit writer.

Usage: python bench/bench_hit_floor.py [ROUNDS]
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import openai  # noqa: E402
from bench_overhead import MESSAGES, _server  # noqa: E402

from unillm import Client  # noqa: E402
from unillm.cache.codec import decode  # noqa: E402
from unillm.ledger.records import new_id  # noqa: E402
from unillm.ledger.rows import iso  # noqa: E402

KW = {"max_tokens": 20, "temperature": 0}
RAW = "raw openai SDK call (loopback)"
DEFAULT = "DEFAULT hit: disk cache + SQLite ledger"
_fingerprint = json.JSONEncoder(sort_keys=True, separators=(",", ":")).encode
_line = json.JSONEncoder(separators=(",", ":")).encode


def floors(client: Client, journal: int) -> dict[str, Callable[[], object]]:
    """The bare minimum of a hit's two halves, over the entry ``client`` already cached."""
    slots = client.cache._slots  # MemoryCache internals: the floor skips our own layers
    (key,) = slots  # the one entry the miss stored
    memo = {_fingerprint(["gpt-4o-mini", MESSAGES, KW]): key}

    def lookup() -> object:
        entry = decode(slots[memo[_fingerprint(["gpt-4o-mini", MESSAGES, KW])]].data)
        return entry.response.model_copy(update={"cached": True})

    row = ["openai", "gpt-4o-mini", "gpt-4o-mini", "cache_hit", 0.04, "0.0000060", key, "{}"]

    def durable_row() -> object:
        now = datetime.now(timezone.utc)
        return os.write(journal, (_line([new_id(), iso(now), iso(now), *row]) + "\n").encode())

    return {"floor: lookup + fresh copy (memory)": lookup, "floor: durable row (os.write)": durable_row}


def rounds(calls: dict[str, Callable[[], object]], n: int) -> tuple[dict[str, list[float]], dict[str, float]]:
    """Wall seconds of every call over ``n`` shuffled rounds, and each subject's process CPU
    seconds in total (background threads included: the hit writer's commits count)."""
    wall: dict[str, list[float]] = {name: [] for name in calls}
    cpu = dict.fromkeys(calls, 0.0)
    order = list(calls)
    clock, cpu_clock = time.perf_counter, time.process_time
    for _ in range(n):
        random.shuffle(order)
        for name in order:
            c0, t0 = cpu_clock(), clock()
            calls[name]()
            t1, c1 = clock(), cpu_clock()
            wall[name].append(t1 - t0)
            cpu[name] += c1 - c0
    return wall, cpu


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 800
    with _server() as url, tempfile.TemporaryDirectory() as d:
        os.environ["UNILLM_HOME"] = d  # the default ledger and cache directories live here
        os.environ.pop("UNILLM_CACHE", None)
        raw = openai.OpenAI(api_key="k", base_url=url + "/v1", max_retries=0)
        prov = {"openai": {"base_url": url + "/v1", "api_key": "k"}}
        default = Client(providers=prov, cache="disk")  # ledger: the default SQLite file
        mem_ledger = Client(providers=prov, cache="memory", ledger=f"sqlite:///{d}/mem-ledger.db")
        disk_off = Client(providers=prov, cache=f"disk:///{d}/cache-off", ledger="off")
        mem_off = Client(providers=prov, cache="memory", ledger="off")
        clients = {DEFAULT: default, "disk cache, ledger off": disk_off,
                   "memory cache + SQLite ledger": mem_ledger, "memory cache, ledger off": mem_off}
        subjects: dict[str, Callable[[], object]] = {
            RAW: lambda: raw.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, **KW)}
        for label, client in clients.items():
            client.chat("gpt-4o-mini", MESSAGES, **KW)  # the miss that fills each cache
            subjects[label] = lambda c=client: c.chat("gpt-4o-mini", MESSAGES, **KW)
        assert default.chat("gpt-4o-mini", MESSAGES, **KW).cache_status == "hit"
        assert default.ledger.store.url.endswith(f"{d}/ledger.db"), default.ledger.store.url
        journal = os.open(f"{d}/journal", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        subjects.update(floors(mem_off, journal))
        store = mem_ledger.ledger.store
        recs = list(store.records(limit=1))  # the miss's row, re-inserted under fresh ids
        subjects["floor: synchronous SQLite INSERT"] = lambda: store.record(recs[0].replace(id=new_id()))

        rounds(subjects, 50)  # warm-up: connections, lazy imports, encoders
        wall, cpu = rounds(subjects, n)
        m_raw = statistics.median(wall[RAW])
        print(f"{n} interleaved rounds; UNILLM_HOME={d}; load {os.getloadavg()[0]:.2f}\n")
        print(f"{'':40} {'median wall':>12} {'x raw':>7} {'mean CPU':>10} {'x raw':>7}")
        for label in subjects:
            med = statistics.median(wall[label])
            print(f"{label:40} {med * 1e6:10.1f}µs {med / m_raw:7.3f} {cpu[label] / n * 1e6:8.1f}µs "
                  f"{cpu[label] / cpu[RAW]:7.3f}")
        print(f"\nbar: {DEFAULT} <= 0.10 x raw ({m_raw * 0.1e6:.0f} µs): "
              f"{statistics.median(wall[DEFAULT]) / m_raw:.3f} (wall), {cpu[DEFAULT] / cpu[RAW]:.3f} "
              "(CPU of this process; the raw call's excludes FakeProvider's, in its own process)")
        os.close(journal)
        for client in clients.values():
            client.close()


if __name__ == "__main__":
    main()
