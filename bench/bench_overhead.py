"""Per-call overhead of unillm vs the raw SDK, against FakeProvider on loopback (in its own
process, as a real vendor would be).

Both sides make the same request to the same server in the same run, interleaved
in a random order each round, so drift and position effects hit both equally. Reports medians and
the ratio. Usage: python bench/bench_overhead.py [N] [vendors]

The ``vendor`` lines are one sync chat per native vendor (openai, anthropic, google, cohere) with
the ledger off, each against its own official SDK's plain call to the same server (the bar:
ratio <= 1.0). ``vendors`` as second argument runs only those.
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
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(__file__).resolve().parents[1] / "tests" / "data" / "tiktoken"))

import openai  # noqa: E402

from unillm import Client  # noqa: E402

def interleaved(calls: dict[str, Callable[[], object]], n: int) -> dict[str, list[float]]:
    """Seconds of each call over ``n`` rounds, each round in a fresh random order (drift hits
    every call alike)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    for _ in range(n):
        random.shuffle(order)
        for name in order:
            t0 = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - t0)
    return times


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


# one plain, typical call of each vendor's official SDK (what an app would write), and the model
VENDORS = ("openai", "anthropic", "google", "cohere")
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "google": "gemini-2.5-flash",
          "cohere": "command-r-plus"}


def raw_call(vendor: str, url: str) -> Callable[[], object]:
    """The vendor SDK's own call (its response models parsed, as a user of the SDK gets them)."""
    model = MODELS[vendor]
    if vendor == "openai":
        oa = openai.OpenAI(api_key="k", base_url=url + "/v1", max_retries=0)
        return lambda: oa.chat.completions.create(model=model, messages=MESSAGES, max_tokens=20)
    if vendor == "anthropic":
        import anthropic
        an = anthropic.Anthropic(api_key="k", base_url=url, max_retries=0)
        return lambda: an.messages.create(model=model, messages=MESSAGES, max_tokens=20)
    if vendor == "google":
        from google import genai
        from google.genai import types
        gc = genai.Client(api_key="k", http_options=types.HttpOptions(
            base_url=url, retry_options=types.HttpRetryOptions(attempts=1)))
        config = types.GenerateContentConfig(max_output_tokens=20)
        return lambda: gc.models.generate_content(model=model, contents=MESSAGES[0]["content"], config=config)
    import cohere
    co = cohere.ClientV2(api_key="k", base_url=url, max_retries=0, log_warning_experimental_features=False)
    return lambda: co.chat(model=model, messages=MESSAGES, max_tokens=20)


def measure_vendors(n: int, vendors: tuple[str, ...] = VENDORS) -> None:
    """Per vendor, ledger off: unillm's ``client.chat`` vs that vendor's SDK call, interleaved
    (all vendors' calls reshuffled together each round), medians and ratio per vendor."""
    with _server() as url:
        base = {"openai": url + "/v1"}
        client = Client(providers={v: {"base_url": base.get(v, url), "api_key": "k"} for v in vendors},
                        ledger="off")
        calls: dict[str, Callable[[], object]] = {}
        for v in vendors:
            calls[f"raw {v}"] = raw_call(v, url)
            calls[f"ours {v}"] = (lambda v=v: client.chat(model=f"{v}/{MODELS[v]}", messages=MESSAGES,
                                                          max_tokens=20))
        for _ in range(50):  # warm: connections, lazy imports, validators
            for call in calls.values():
                call()
        times = interleaved(calls, n)
    for v in vendors:
        m_raw = statistics.median(times[f"raw {v}"]) * 1e6
        m_ours = statistics.median(times[f"ours {v}"]) * 1e6
        print(f"{'vendor ' + v + ', ledger off':28} raw SDK    {m_raw:8.0f} µs   unillm {m_ours:8.0f} µs   "
              f"added {m_ours - m_raw:6.0f} µs   ratio {m_ours / m_raw:5.3f}", flush=True)


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    measure_vendors(n)
    if sys.argv[2:3] == ["vendors"]:
        return
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
