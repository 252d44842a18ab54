"""Gateway overhead and streaming throughput, against FakeProvider on loopback.

Three processes: FakeProvider, ``unillm serve`` (uvicorn, SQLite ledger) and this
client, so none steals the other's GIL. Reports:

* latency: the OpenAI SDK calling FakeProvider directly vs through the gateway,
  interleaved (direct, gateway, direct, ...); p50/p95 of each and of the
  added latency per pair; plus in-process ``Client.chat`` to split the added
  time into library pipeline (pricing, ledger) and gateway (HTTP hop, auth, JSON);
* throughput: 50 concurrent streaming clients, requests/s and chunks/s.

Usage: python bench/bench_gateway.py [N] [STREAMS_PER_CLIENT]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(__file__).resolve().parents[2] / "shared" / "tiktoken"))

MESSAGES = [{"role": "user", "content": "Say hello in five words."}]
TEXT = "Hello there, how are you doing today? " * 4


def run_fake() -> None:
    from unillm.testing import FakeProvider, Reply
    fake = FakeProvider(Reply(text=TEXT, chunk_size=16, usage={"input_tokens": 12, "output_tokens": 40})).start()
    print(fake.url, flush=True)
    sys.stdin.read()


def run_gateway(fake_url: str, ledger: str) -> None:
    import socket

    import uvicorn

    from unillm import Client
    from unillm.server.app import create_app
    providers = {"openai": {"base_url": fake_url + "/v1", "api_key": "k", "max_retries": 0}}
    client = Client(providers=providers, ledger=ledger, cache="off")
    app = create_app(client)
    secret, _ = app.state.gateway.keys.create(user="bench", project="bench")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # proto set: asyncio then disables Nagle
    sock.bind(("127.0.0.1", 0))
    print(f"http://127.0.0.1:{sock.getsockname()[1]} {secret}", flush=True)
    uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")).run(sockets=[sock])


def pct(values: list[float], p: int) -> float:
    s = sorted(values)
    return s[max(0, -(-p * len(s) // 100) - 1)]


def latency(fake_url: str, gw_url: str, key: str, n: int, ledger: str) -> None:
    import openai

    from unillm import Client
    direct = openai.OpenAI(base_url=fake_url + "/v1", api_key="k", max_retries=0)
    via = openai.OpenAI(base_url=gw_url + "/v1", api_key=key, max_retries=0)
    lib = Client(providers={"openai": {"base_url": fake_url + "/v1", "api_key": "k", "max_retries": 0}},
                 ledger=ledger, cache="off")
    kw = {"model": "gpt-4o-mini", "messages": MESSAGES, "max_tokens": 64}
    for _ in range(50):
        direct.chat.completions.create(**kw)
        via.chat.completions.create(**kw)
        lib.chat(**kw)
    t_direct, t_via, t_lib = [], [], []
    for _ in range(n):
        t0 = time.perf_counter()
        direct.chat.completions.create(**kw)
        t1 = time.perf_counter()
        via.chat.completions.create(**kw)
        t2 = time.perf_counter()
        lib.chat(**kw)
        t3 = time.perf_counter()
        t_direct.append((t1 - t0) * 1e3)
        t_via.append((t2 - t1) * 1e3)
        t_lib.append((t3 - t2) * 1e3)
    added = [v - d for v, d in zip(t_via, t_direct)]
    gateway_only = [v - c for v, c in zip(t_via, t_lib)]
    print(f"latency, {n} calls (ms)            p50      p95")
    for name, xs in (("SDK -> FakeProvider", t_direct), ("SDK -> gateway -> FakeProvider", t_via),
                     ("Client.chat in-process", t_lib), ("added by the gateway (paired)", added),
                     ("  of which gateway only", gateway_only)):
        print(f"  {name:32} {statistics.median(xs):7.2f}  {pct(xs, 95):7.2f}")


async def throughput(gw_url: str, key: str, clients: int, per_client: int) -> None:
    import openai
    sdk = openai.AsyncOpenAI(base_url=gw_url + "/v1", api_key=key, max_retries=0)
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
    total = clients * per_client
    print(f"throughput: {clients} concurrent streaming clients, {total} streams in {dt:.2f}s: "
          f"{total / dt:.0f} streams/s, {chunks / dt:.0f} chunks/s")
    await sdk.close()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--fake":
        return run_fake()
    if len(sys.argv) > 1 and sys.argv[1] == "--gateway":
        return run_gateway(sys.argv[2], sys.argv[3])
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    per_client = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "UNILLM_HOME": d}
        fake = subprocess.Popen([sys.executable, __file__, "--fake"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True, env=env)
        fake_url = fake.stdout.readline().strip()
        gw = subprocess.Popen([sys.executable, __file__, "--gateway", fake_url, f"sqlite:///{d}/gw.db"],
                              stdout=subprocess.PIPE, text=True, env=env)
        gw_url, key = gw.stdout.readline().split()
        try:
            time.sleep(0.5)
            latency(fake_url, gw_url, key, n, f"sqlite:///{d}/lib.db")
            asyncio.run(throughput(gw_url, key, 50, per_client))
        finally:
            gw.terminate()
            fake.terminate()
            gw.wait(10)
            fake.wait(10)


if __name__ == "__main__":
    main()
