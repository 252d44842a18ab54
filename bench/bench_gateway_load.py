"""The gateway under load: N concurrent clients for a fixed time against FakeProvider.

Separate processes, as in ``bench_gateway.py``: FakeProvider, one ``unillm serve`` per
gateway spec (same spec syntax: ``name:src=DIR,workers=2,...``; SQLite ledger, no cache)
and this client. Each of ``--clients`` tasks shares one ``openai.AsyncOpenAI`` (its pool,
as an application would) and sends non-streamed calls back to back for ``--seconds``.
Reported per gateway and client count: requests, client errors by exception class (a
reset, a timeout, any non-2xx), 503s the gateway answered when saturated (which the SDK
retries: ``max_retries=0`` here, so each one is counted), requests/s, p50/p95/p99/max.
The bar (issue 21): 0 client errors and p99 <= 3x p50 at 50 concurrent clients.

Usage: python bench/bench_gateway_load.py [--clients 50 --clients 200] [--seconds 30]
                                          [--gateway after] [--gateway "before:src=DIR"]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gateway import MESSAGES, _wait_up, parse_spec, pct, start


#: the clients' HTTP client: aiohttp (``openai.DefaultAioHttpClient``), the SDK's default
#: (``sdk``) or an ``httpx.AsyncClient``
HTTP = ("aiohttp", "sdk", "httpx")


def sdk_client(url: str, key: str, http: str) -> Any:
    """The OpenAI SDK the clients share, on the HTTP client ``http`` (see `HTTP`)."""
    import openai
    kw: dict[str, Any] = {"base_url": url + "/v1", "api_key": key, "max_retries": 0}
    if http == "aiohttp":
        kw["http_client"] = openai.DefaultAioHttpClient(timeout=120.0)  # the SDK's limits: 1,000
    elif http == "httpx":
        import httpx
        kw["http_client"] = httpx.AsyncClient(timeout=120.0, limits=httpx.Limits(max_connections=1000))
    else:
        kw["timeout"] = 120.0
    return openai.AsyncOpenAI(**kw)


async def load(url: str, key: str, clients: int, seconds: float, http: str = "aiohttp") -> dict[str, Any]:
    import openai
    sdk = sdk_client(url, key, http)
    times: list[float] = []
    errors: collections.Counter[str] = collections.Counter()
    stop = time.perf_counter() + seconds

    async def one() -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            try:
                await sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=64)
            except openai.APIStatusError as exc:
                errors[f"HTTP {exc.status_code}"] += 1
            except Exception as exc:  # noqa: BLE001 - every failure a client sees is counted
                cause = exc.__cause__ or exc
                errors[type(cause).__name__] += 1
            else:
                times.append((time.perf_counter() - t0) * 1e3)

    await asyncio.gather(*(one() for _ in range(min(clients, 5))))  # connections up, code warm
    times.clear()
    errors.clear()
    stop = time.perf_counter() + seconds
    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(clients)))
    wall = time.perf_counter() - t0
    await sdk.close()
    return {"ok": len(times), "errors": dict(errors), "rps": len(times) / wall,
            "p50": statistics.median(times) if times else 0.0, "p95": pct(times, 95) if times else 0.0,
            "p99": pct(times, 99) if times else 0.0, "max": max(times) if times else 0.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, action="append", default=[])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--gateway", action="append", default=[], metavar="SPEC")
    ap.add_argument("--http", choices=HTTP, default="aiohttp", help="the client's HTTP client")
    args = ap.parse_args()
    specs, counts = args.gateway or ["after"], args.clients or [50, 200]
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "UNILLM_HOME": d}
        procs = [start(["--fake"], env)]
        try:
            fake_url = procs[0].stdout.readline().strip()
            gateways: dict[str, tuple[str, str]] = {}
            for i, spec in enumerate(specs):
                procs.append(start(["--gateway-process", fake_url, f"sqlite:///{d}/gw{i}.db", spec], env,
                                   Path(d) / f"gw{i}.log"))
                url, key = procs[-1].stdout.readline().split()
                gateways[parse_spec(spec)[0]] = (url, key)
            _wait_up(gateways)
            print(f"{'gateway':10} {'clients':>7} {'ok':>7} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} "
                  f"{'p99 ms':>8} {'max ms':>8} {'p99/p50':>7}  client errors")
            for clients in counts:
                for name, (url, key) in gateways.items():
                    r = asyncio.run(load(url, key, clients, args.seconds, args.http))
                    ratio = r["p99"] / r["p50"] if r["p50"] else float("nan")
                    errs = ", ".join(f"{k} x{v}" for k, v in sorted(r["errors"].items())) or "0"
                    print(f"{name:10} {clients:7d} {r['ok']:7d} {r['rps']:7.0f} {r['p50']:8.1f} "
                          f"{r['p95']:8.1f} {r['p99']:8.1f} {r['max']:8.1f} {ratio:7.2f}  {errs}", flush=True)
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(10)


if __name__ == "__main__":
    main()
