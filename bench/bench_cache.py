"""Cache hot-path costs: key computation, encode/decode, get/set on memory and disk (medians).

The issue's bar (a hit in <= 5% of a raw SDK call against FakeProvider) is measured
end to end after Client integration; this bench shows what the cache itself adds.
Usage: python bench/bench_cache.py [N]
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unillm.cache import cache_key, decode, encode, make_entry, open_cache, replay_chunks  # noqa: E402
from unillm.cache.codec import chunks_from_response  # noqa: E402
from unillm.profiles import ModelRef  # noqa: E402
from unillm.types import ChatRequest, ChatResponse, Choice, ResponseMessage, Usage  # noqa: E402

REF = ModelRef("openai", "gpt-4o-mini", "openai")
SMALL = ChatRequest(model="gpt-4o-mini", messages=[{"role": "user", "content": "Say hello in five words."}],
                    temperature=0, max_tokens=20)
LARGE = ChatRequest(
    model="gpt-4o-mini", temperature=0,
    messages=[{"role": "system", "content": "You are a careful assistant. " * 40}]
    + [{"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}: " + "lorem ipsum " * 60}
       for i in range(10)],
    tools=[{"function": {"name": f"tool_{i}", "description": "does a thing",
                         "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}}
           for i in range(5)],
    extra={"logprobs": True, "metadata": {"a": 1.0, "b": [1, 2, 3]}})
RESPONSE = ChatResponse(id="chatcmpl-1", created=1700000000, model="gpt-4o-mini", provider="openai",
                        choices=[Choice(message=ResponseMessage(content="Hello there, how are you?"),
                                        finish_reason="stop")],
                        usage=Usage(input_tokens=12, output_tokens=7))
ENTRY = make_entry(RESPONSE, chunks=chunks_from_response(RESPONSE), cost_usd=Decimal("0.0000060"))


def median_us(fn: Callable[[], object], n: int) -> float:
    for _ in range(min(n, 200)):
        fn()
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def row(label: str, fn: Callable[[], object], n: int) -> None:
    print(f"{label:40} {median_us(fn, n):8.1f} µs")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    data = encode(ENTRY)
    print(f"median of {n} runs; entry is {len(data)} bytes\n")
    row("cache_key (1 short message)", lambda: cache_key(REF, SMALL), n)
    row("cache_key (21 messages, 5 tools)", lambda: cache_key(REF, LARGE), n)
    row("encode entry", lambda: encode(ENTRY), n)
    row("decode entry", lambda: decode(data), n)
    row("replay_chunks", lambda: replay_chunks(ENTRY), n)
    with tempfile.TemporaryDirectory() as d:
        for url in ("memory", f"disk://{d}/cache"):
            backend = open_cache(url)
            name = url.split(":")[0]
            key = cache_key(REF, SMALL)
            counter = iter(range(10**9))
            row(f"{name}: set", lambda: backend.set(f"k{next(counter)}", ENTRY), n)
            backend.set(key, ENTRY)
            row(f"{name}: get (hit)", lambda: backend.get(key), n)
            row(f"{name}: get (miss)", lambda: backend.get("absent"), n)
            row(f"{name}: key + get (a whole lookup)", lambda: backend.get(cache_key(REF, SMALL)), n)
            backend.close()
        reference(n, f"disk://{d}/cache")


def reference(n: int, url: str) -> None:
    """A raw openai SDK call against FakeProvider, interleaved with a whole disk lookup."""
    try:
        import openai
    except ImportError:
        return
    from unillm.testing import FakeProvider, Reply

    backend = open_cache(url)
    backend.set(cache_key(REF, SMALL), ENTRY)
    msgs = [{"role": "user", "content": "Say hello in five words."}]
    reply = Reply(text="Hello there, how are you?", usage={"input_tokens": 12, "output_tokens": 7})
    with FakeProvider(reply) as fake:
        raw = openai.OpenAI(api_key="k", base_url=fake.base_url("openai"), max_retries=0)
        t_raw, t_hit = [], []
        for i in range(min(n, 500) + 50):
            t0 = time.perf_counter()
            raw.chat.completions.create(model="gpt-4o-mini", messages=msgs, max_tokens=20, temperature=0)
            t1 = time.perf_counter()
            replay_chunks(backend.get(cache_key(REF, SMALL)))
            t2 = time.perf_counter()
            if i >= 50:  # warm-up done
                t_raw.append(t1 - t0)
                t_hit.append(t2 - t1)
    backend.close()
    m_raw, m_hit = statistics.median(t_raw) * 1e6, statistics.median(t_hit) * 1e6
    print(f"\nraw openai call {m_raw:8.0f} µs; disk lookup + decode + replay {m_hit:6.1f} µs "
          f"= {m_hit / m_raw:.1%} of a call (the bar for a whole cached chat() is 5%)")


if __name__ == "__main__":
    main()
