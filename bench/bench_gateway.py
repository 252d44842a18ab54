"""Gateway overhead and streaming throughput, against FakeProvider on loopback.

Separate processes: FakeProvider, one ``unillm serve`` per gateway spec (served by
`unillm.server.run.serve`, SQLite ledger) and this client, so none steals another's
GIL. Reports:

* latency: the OpenAI SDK calling FakeProvider directly vs through each gateway,
  interleaved (direct, each gateway, in-process ``Client.chat``, in a fresh random
  order each round);
  p50/p95 of each and of the added latency per pair (gateway minus the direct
  call of the same round); ``Client.chat`` splits the added time into library
  pipeline (pricing, ledger) and gateway (HTTP hop, uvicorn, auth, JSON);
* throughput: 50 concurrent streaming clients per gateway, requests/s and chunks/s
  (median of ``--rounds`` rounds, gateways alternating).

A gateway spec is ``name:key=value,...`` with keys ``loop`` (auto|asyncio|uvloop),
``http`` (auto|h11|httptools), ``workers``, ``access_log`` (0|1), ``bind=plain``
(a socket without IPPROTO_TCP, as uvicorn's own ``--workers`` bind makes) and
``log`` (uvicorn's log level, default warning; ``log=info,access_log=1`` is uvicorn's
default access log), ``metrics=1`` (``[server.metrics] enabled``) and ``src=DIR`` (import unillm from another checkout, e.g. an
unpacked ``git archive``). Gateway logs go to a file in the temporary directory.

Round two (issue 13 limits, tenancy, shared rate limits, in-flight rows) against the tree
before it (``--gateway "before:src=DIR"``, DIR a ``git archive`` of 2dfe8bc). Wall-clock is
noisy on a shared host; the gateway process's syscalls per call (``strace -c -p``, 300
sequential calls) are not: ``sendto`` 4 -> 3 (head and body in one write,
`unillm.server.protocol.OneWrite`), ``epoll_wait`` 10.4 -> 8.2 (achat's deadline without
``wait_for``'s extra task); before round two 4 and 7.6. Still above it: ``pwrite64`` 9.0 ->
11.5 per call (the ledger row) and ``getpid`` 53 -> 60 (``asyncio.get_running_loop``).
Since the gateway serves with httptools (`unillm.server.protocol.GuardedHttpToolsProtocol`),
compare with ``"before:src=DIR,http=h11"``: the protocol that tree served with as installed.

Round three (p50 against 2dfe8bc): one middleware layer fewer (`limits.Limits` also
releases the leases), and the body and call deadlines through `unillm.deadline` (one timer
per loop) instead of an ``asyncio.timeout`` each, whose cancelled handles filled the loop's
timer heap: timers per call 7.5 -> 5.6 (2dfe8bc: 5.5), heap compares 59 -> 22 (28), cProfile
counts. Gateway CPU per call (main thread, 10 shuffled blocks of 200 calls, two runs, a
one-off script starting this file's ``--gateway-process``):
2dfe8bc 3.80 / 3.60 ms, before 4.03 / 3.98, after 3.90 / 3.48. The per-call interleaved
p50 above could not tell before from after at load 9-11 (within 0.2 ms either way).

Usage: python bench/bench_gateway.py [-n 500] [--streams 10] [--rounds 3]
                                     [--gateway serve] [--gateway "asyncio:loop=asyncio"] ...
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(__file__).resolve().parents[1] / "tests" / "data" / "tiktoken"))

MESSAGES = [{"role": "user", "content": "Say hello in five words."}]
TEXT = "Hello there, how are you doing today? " * 4
CLIENTS = 50


def run_fake() -> None:
    from unillm.testing import FakeProvider, Reply
    fake = FakeProvider(Reply(text=TEXT, chunk_size=16, usage={"input_tokens": 12, "output_tokens": 40})).start()
    print(fake.url, flush=True)
    sys.stdin.read()


def parse_spec(text: str) -> tuple[str, dict[str, str]]:
    name, _, rest = text.partition(":")
    opts = dict(item.split("=", 1) for item in rest.split(",") if item)
    return name, opts


def run_gateway(fake_url: str, ledger: str, spec: str) -> None:
    """One gateway process (or a supervisor of ``workers`` processes) per spec."""
    _, opts = parse_spec(spec)
    if opts.get("src"):
        sys.path.insert(0, opts["src"])
    from unillm import Client
    from unillm.server.keys import KeyStore
    overrides: dict[str, Any] = {"providers": {"openai": {"base_url": fake_url + "/v1", "api_key": "k",
                                                          "max_retries": 0}},
                                 "ledger": ledger, "cache": "off"}
    if opts.get("metrics") == "1":  # Prometheus /metrics on: every call counted
        overrides["server"] = {"metrics": {"enabled": True}}
    secret, _ = KeyStore(Client(**overrides).ledger.store).create(user="bench", project="bench")
    if opts.get("bind") == "plain":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
    print(f"http://127.0.0.1:{sock.getsockname()[1]} {secret}", flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # uvicorn's access log goes to stdout: into the log file
    uv = {k: opts[k] for k in ("loop", "http") if k in opts}
    workers = int(opts.get("workers", 1))
    try:
        from unillm.server.run import AppFactory, serve
    except ImportError:  # a checkout from before unillm.server.run: uvicorn's defaults
        import uvicorn

        from unillm.server.app import create_app
        config = uvicorn.Config(create_app(Client(**overrides)), log_level=opts.get("log", "warning"),
                                access_log=opts.get("access_log") == "1", lifespan="off", **uv)
        return uvicorn.Server(config).run(sockets=[sock])
    serve(AppFactory(None, overrides), workers=workers, sock=sock, log_level=opts.get("log", "warning"),
          access_log=opts.get("access_log") == "1", **uv)


def pct(values: list[float], p: int) -> float:
    s = sorted(values)
    return s[max(0, -(-p * len(s) // 100) - 1)]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU of a process and its descendants (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += cpu_seconds(int(child)) or 0.0
        return total
    except (OSError, ValueError, IndexError):
        return None


def latency(fake_url: str, gateways: dict[str, tuple[str, str]], n: int, ledger: str,
            pids: dict[str, int]) -> None:
    import openai

    from unillm import Client
    direct = openai.OpenAI(base_url=fake_url + "/v1", api_key="k", max_retries=0)
    vias = {name: openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
            for name, (url, key) in gateways.items()}
    lib = Client(providers={"openai": {"base_url": fake_url + "/v1", "api_key": "k", "max_retries": 0}},
                 ledger=ledger, cache="off")
    kw = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 64}
    calls = [("direct", lambda: direct.chat.completions.create(**kw))]
    calls += [(name, lambda sdk=sdk: sdk.chat.completions.create(**kw)) for name, sdk in vias.items()]
    calls.append(("lib", lambda: lib.chat(**kw)))
    for _ in range(50):
        for _name, call in calls:
            call()
    times: dict[str, list[float]] = {name: [] for name, _ in calls}
    cpu0 = {name: cpu_seconds(pid) for name, pid in pids.items()}
    order = list(calls)
    for _ in range(n):
        random.shuffle(order)  # a fresh order each round: no target always follows another
        for name, call in order:
            t0 = time.perf_counter()
            call()
            times[name].append((time.perf_counter() - t0) * 1e3)
    rows = [("SDK -> FakeProvider", times["direct"]), ("Client.chat in-process", times["lib"])]
    for name in vias:
        rows += [(f"[{name}] SDK -> gateway -> FakeProvider", times[name]),
                 (f"[{name}] added by the gateway (paired)", _minus(times[name], times["direct"])),
                 (f"[{name}]   of which gateway only", _minus(times[name], times["lib"]))]
    cpu = {name: _per_call(cpu0[name], cpu_seconds(pid), n) for name, pid in pids.items()}
    print(f"latency, {n} calls each (ms)                     p50      p95")
    for label, xs in rows:
        print(f"  {label:44} {statistics.median(xs):7.2f}  {pct(xs, 95):7.2f}")
    for name, ms in cpu.items():
        if ms is not None:
            print(f"  [{name}] gateway CPU per call {ms:.3f} ms (user+system, all its processes)")


def _per_call(before: float | None, after: float | None, n: int) -> float | None:
    return None if before is None or after is None else (after - before) * 1e3 / n


def _minus(a: list[float], b: list[float]) -> list[float]:
    return [x - y for x, y in zip(a, b)]


async def throughput(url: str, key: str, clients: int, per_client: int) -> tuple[float, float]:
    """(streams/s, chunks/s) for ``clients`` concurrent streaming clients."""
    import openai
    sdk = openai.AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    chunks = 0

    async def one() -> None:
        nonlocal chunks
        for _ in range(per_client):
            stream = await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            async for _chunk in stream:
                chunks += 1

    await asyncio.gather(*(one() for _ in range(3)))  # warm up
    chunks = 0
    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(clients)))
    dt = time.perf_counter() - t0
    await sdk.close()
    return clients * per_client / dt, chunks / dt


def report_throughput(gateways: dict[str, tuple[str, str]], per_client: int, rounds: int) -> None:
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in gateways}
    for _ in range(rounds):
        for name, (url, key) in gateways.items():
            results[name].append(asyncio.run(throughput(url, key, CLIENTS, per_client)))
    print(f"throughput, {CLIENTS} concurrent streaming clients x {per_client} streams "
          f"(median of {rounds} rounds)")
    for name, rs in results.items():
        print(f"  [{name}] {statistics.median(r[0] for r in rs):6.0f} streams/s  "
              f"{statistics.median(r[1] for r in rs):7.0f} chunks/s")


def start(args: list[str], env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    stderr = log.open("w") if log is not None else None
    return subprocess.Popen([sys.executable, __file__, *args], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--fake":
        return run_fake()
    if len(sys.argv) > 1 and sys.argv[1] == "--gateway-process":
        return run_gateway(*sys.argv[2:5])
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=500, help="latency calls per target")
    ap.add_argument("--streams", type=int, default=10, help="streams per throughput client")
    ap.add_argument("--rounds", type=int, default=3, help="throughput rounds")
    ap.add_argument("--gateway", action="append", default=[], metavar="SPEC")
    args = ap.parse_args()
    specs = args.gateway or ["serve"]
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "UNILLM_HOME": d}
        procs = [start(["--fake"], env)]
        try:
            fake_url = procs[0].stdout.readline().strip()
            gateways: dict[str, tuple[str, str]] = {}
            pids: dict[str, int] = {}
            for i, spec in enumerate(specs):
                procs.append(start(["--gateway-process", fake_url, f"sqlite:///{d}/gw{i}.db", spec], env,
                                   Path(d) / f"gw{i}.log"))
                url, key = procs[-1].stdout.readline().split()
                gateways[parse_spec(spec)[0]] = (url, key)
                pids[parse_spec(spec)[0]] = procs[-1].pid
            _wait_up(gateways)
            print(json.dumps({"gateways": dict(zip(gateways, specs))}))
            latency(fake_url, gateways, args.n, f"sqlite:///{d}/lib.db", pids)
            report_throughput(gateways, args.streams, args.rounds)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(10)


def _wait_up(gateways: dict[str, tuple[str, str]], timeout: float = 30.0) -> None:
    import httpx
    deadline = time.monotonic() + timeout
    for url, _ in gateways.values():
        while True:
            try:
                httpx.get(url + "/health", timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


if __name__ == "__main__":
    main()
