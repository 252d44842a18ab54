"""Side by side, so anyone can re-measure them: the raw openai SDK, unillm's configurations,
and litellm and any-llm where they are importable, against FakeProvider in its own process.

Scenarios (each prints median µs per call and the ratio to the raw SDK):

* ``sync``   one chat completion: raw SDK; unillm ledger off / SQLite ledger; litellm; any-llm
* ``async``  the same awaited on one event loop (AsyncOpenAI, achat, acompletion)
* ``stream`` a long streamed answer, per chunk (the whole stream's time / its chunks)
* ``hits``   cache hits: unillm memory cache and disk cache (the default: disk + SQLite
             ledger) and litellm's in-memory cache, against a raw (uncached) SDK call
* ``import`` cold start: ``import X`` in a fresh interpreter (median of several)

Every scenario runs its subjects in interleaved rounds, shuffled afresh each round, so drift
and position hit every subject alike; the figures are medians. A peer that cannot be
imported is skipped with one printed line. The peers are best installed apart from the
project, e.g.::

    python -m venv /tmp/peers && /tmp/peers/bin/pip install litellm any-llm-sdk fastapi openai anthropic \\
        pydantic tenacity click platformdirs diskcache tiktoken
    PYTHONPATH=. /tmp/peers/bin/python bench/compare_peers.py [ROUNDS] [SCENARIO ...]

litellm is imported with ``LITELLM_LOCAL_MODEL_COST_MAP=True`` (its bundled price map: no
network at import, here or in the cold-start figure).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT / "tests" / "data" / "tiktoken"))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import openai
from bench_overhead import interleaved

from unillm import Client

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "Say hello in five words."}]
KW: dict[str, Any] = {"max_tokens": 20}
HIT_KW: dict[str, Any] = {"max_tokens": 20, "temperature": 0}  # deterministic: cacheable
LONG_TEXT = "lorem ipsum dolor sit amet " * 80  # streamed 8 characters a chunk: ~270 chunks
SCENARIOS = ("sync", "async", "stream", "hits", "import")

_SERVER = """
import sys
from unillm.testing import FakeProvider, Reply
with FakeProvider(Reply(text=sys.argv[1], usage={"input_tokens": 12, "output_tokens": 7})) as fake:
    print(fake.url, flush=True)
    sys.stdin.read()
"""


@contextlib.contextmanager
def server(text: str) -> Iterator[str]:
    """FakeProvider in its own process (a real vendor is never in yours); its /v1 URL."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, text], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip() + "/v1"
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


# ── the peers ────────────────────────────────────────────────────────────────

def peer(name: str) -> Any:
    """The module, or None with one printed line saying why it is skipped."""
    try:
        return importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001 - any failure to import means: skip this peer
        print(f"{name}: not importable ({type(exc).__name__}: {str(exc)[:80]}); skipped")
        return None


def _version(module: str) -> str:
    from importlib import metadata
    name = {"any_llm": "any-llm-sdk"}.get(module, module)
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "?"


def unillm_client(url: str, ledger: str, **kw: Any) -> Client:
    return Client(providers={"openai": {"base_url": url, "api_key": "k"}}, ledger=ledger, **kw)


def subjects(url: str, d: str, litellm: Any, any_llm: Any, *, aio: bool = False) -> dict[str, Callable[[], Any]]:
    """The same chat call through each subject: ``chat``/``completion``, or with ``aio`` their
    async twins (each returns an awaitable then)."""
    raw = (openai.AsyncOpenAI if aio else openai.OpenAI)(api_key="k", base_url=url, max_retries=0)
    off = unillm_client(url, "off")
    sql = unillm_client(url, f"sqlite:///{d}/{'async' if aio else 'sync'}.db")
    off_chat, sql_chat = (off.achat, sql.achat) if aio else (off.chat, sql.chat)
    out: dict[str, Callable[[], Any]] = {
        "raw openai SDK": lambda: raw.chat.completions.create(model=MODEL, messages=MESSAGES, **KW),
        "unillm, ledger off": lambda: off_chat(MODEL, MESSAGES, **KW),
        "unillm, SQLite ledger": lambda: sql_chat(MODEL, MESSAGES, **KW),
    }
    if litellm is not None:
        complete = litellm.acompletion if aio else litellm.completion
        out["litellm"] = lambda: complete(model=f"openai/{MODEL}", messages=MESSAGES, api_base=url,
                                          api_key="k", max_retries=0, **KW)
    if any_llm is not None:
        llm = any_llm.AnyLLM.create("openai", api_key="k", api_base=url, max_retries=0)
        any_complete = llm.acompletion if aio else llm.completion
        out["any-llm"] = lambda: any_complete(model=MODEL, messages=MESSAGES, **KW)
    return out


def stream_subjects(url: str, d: str, litellm: Any, any_llm: Any) -> dict[str, Callable[[], int]]:
    """Each subject reads one whole stream and returns how many chunks it got."""
    raw = openai.OpenAI(api_key="k", base_url=url, max_retries=0)
    off = unillm_client(url, "off")
    sql = unillm_client(url, f"sqlite:///{d}/stream.db")

    def count(chunks: Any) -> int:
        return sum(1 for _ in chunks)

    out: dict[str, Callable[[], int]] = {
        "raw openai SDK": lambda: count(raw.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": True})),
        "unillm, ledger off": lambda: count(off.chat(MODEL, MESSAGES, stream=True)),
        "unillm, SQLite ledger": lambda: count(sql.chat(MODEL, MESSAGES, stream=True)),
    }
    if litellm is not None:
        out["litellm"] = lambda: count(litellm.completion(
            model=f"openai/{MODEL}", messages=MESSAGES, api_base=url, api_key="k", max_retries=0,
            stream=True, stream_options={"include_usage": True}))
    if any_llm is not None:
        llm = any_llm.AnyLLM.create("openai", api_key="k", api_base=url, max_retries=0)
        out["any-llm"] = lambda: count(llm.completion(model=MODEL, messages=MESSAGES, stream=True))
    return out


def hit_subjects(url: str, d: str, litellm: Any, any_llm: Any) -> dict[str, Callable[[], Any]]:
    raw = openai.OpenAI(api_key="k", base_url=url, max_retries=0)
    mem = unillm_client(url, f"sqlite:///{d}/mem.db", cache="memory")
    disk = unillm_client(url, f"sqlite:///{d}/disk.db", cache=f"disk:///{d}/cache")
    disk_off = unillm_client(url, "off", cache=f"disk:///{d}/cache-off")
    out: dict[str, Callable[[], Any]] = {
        "raw openai SDK (uncached)": lambda: raw.chat.completions.create(model=MODEL, messages=MESSAGES, **KW),
        "unillm hit, memory + SQLite ledger": lambda: mem.chat(MODEL, MESSAGES, **HIT_KW),
        "unillm hit, disk + SQLite (default)": lambda: disk.chat(MODEL, MESSAGES, **HIT_KW),
        "unillm hit, disk, ledger off": lambda: disk_off.chat(MODEL, MESSAGES, **HIT_KW),
    }
    if litellm is not None:
        from litellm.caching.caching import Cache
        litellm.cache = Cache(type="local")  # in memory; only this scenario runs with it
        out["litellm hit, in-memory cache"] = lambda: litellm.completion(
            model=f"openai/{MODEL}", messages=MESSAGES, api_base=url, api_key="k", max_retries=0,
            caching=True, **HIT_KW)
    if any_llm is not None:
        print("any-llm: has no response cache; skipped in 'hits'")
    return out


# ── timing ───────────────────────────────────────────────────────────────────

def viable(subjects: dict[str, Callable[[], Any]]) -> dict[str, Callable[[], Any]]:
    """The subjects whose first two calls work (the second is a cache hit where there is a
    cache); a failing one is skipped with one printed line."""
    out = {}
    for name, fn in subjects.items():
        try:
            fn()
            fn()
        except Exception as exc:  # noqa: BLE001 - a peer's failure skips it, never the run
            print(f"{name}: failed ({type(exc).__name__}: {str(exc)[:80]}); skipped")
            continue
        out[name] = fn
    return out


def rounds(subjects: dict[str, Callable[[], Any]], n: int, warm: int = 30) -> dict[str, float]:
    """Median seconds per subject over ``n`` rounds, each round in a fresh random order."""
    subjects = viable(subjects)
    for fn in subjects.values():
        for _ in range(warm):
            fn()
    return {k: statistics.median(v) for k, v in interleaved(subjects, n).items()}


async def arounds(subjects: dict[str, Callable[[], Awaitable[Any]]], n: int, warm: int = 30) -> dict[str, float]:
    for fn in subjects.values():
        for _ in range(warm):
            await fn()
    times: dict[str, list[float]] = {k: [] for k in subjects}
    order = list(subjects)
    for _ in range(n):
        random.shuffle(order)
        for name in order:
            t0 = time.perf_counter()
            await subjects[name]()
            times[name].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def report(title: str, medians: dict[str, float], unit: str = "per call", per: float = 1.0) -> None:
    base = next(iter(medians.values()))  # the raw SDK comes first
    print(f"\n{title} ({unit}; median of interleaved, reshuffled rounds)")
    for name, seconds in medians.items():
        print(f"  {name:38} {seconds / per * 1e6:10.1f} µs   {seconds / base:6.3f}× raw")


def cold_start(n: int, modules: list[str]) -> dict[str, float]:
    """Median seconds of ``import X`` in a fresh interpreter, the interpreters interleaved."""
    code = "import time, importlib, sys; t = time.perf_counter(); importlib.import_module(sys.argv[1]); " \
           "print(time.perf_counter() - t)"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    times: dict[str, list[float]] = {m: [] for m in modules}
    order = list(modules)
    for _ in range(n):
        random.shuffle(order)
        for module in order:
            out = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True,
                                 env=env, check=True)
            times[module].append(float(out.stdout.strip().splitlines()[-1]))
    return {m: statistics.median(v) for m, v in times.items()}


def main() -> None:
    args = sys.argv[1:]
    n = int(args.pop(0)) if args and args[0].isdigit() else 300
    chosen = [a for a in args if a in SCENARIOS] or list(SCENARIOS)
    litellm, any_llm = peer("litellm"), peer("any_llm")
    if litellm is not None:
        litellm.suppress_debug_info = True
        litellm.telemetry = False
    versions = {m.__name__: _version(m.__name__) for m in (openai, litellm, any_llm) if m is not None}
    print(f"python {sys.version.split()[0]}; {versions}; {n} rounds; load {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as d, server("Hello there, how are you?") as url:
        if "sync" in chosen:
            report("sync chat", rounds(subjects(url, d, litellm, any_llm), n))
        if "async" in chosen:
            report("async chat", asyncio.run(arounds(subjects(url, d, litellm, any_llm, aio=True), n)))
        if "hits" in chosen:
            report("cache hits vs a raw uncached call", rounds(hit_subjects(url, d, litellm, any_llm), n))
            if litellm is not None:
                litellm.cache = None
    if "stream" in chosen:
        with tempfile.TemporaryDirectory() as d, server(LONG_TEXT) as url:
            streams = stream_subjects(url, d, litellm, any_llm)
            chunks = streams["raw openai SDK"]()
            report(f"streams ({chunks} chunks each)", rounds(streams, max(n // 5, 20), warm=5), "per chunk",
                   per=chunks)
    if "import" in chosen:
        modules = ["openai", "unillm"] + [m.__name__ for m in (litellm, any_llm) if m is not None]
        medians = cold_start(max(n // 30, 5), modules)
        base = medians["openai"]
        print("\ncold start: import in a fresh interpreter (median)")
        for module, seconds in medians.items():
            print(f"  import {module:31} {seconds * 1e3:10.1f} ms   {seconds / base:6.3f}× import openai")


if __name__ == "__main__":
    main()
