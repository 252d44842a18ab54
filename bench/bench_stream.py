"""Streaming: a long answer read chunk by chunk, unillm vs the raw SDK's own stream.

FakeProvider runs in its own process and streams ~2,500 small deltas; both sides read
the whole stream, interleaved in random order, same run. Reports medians, per-chunk
cost and the ratio, for each native vendor (openai, anthropic, google, cohere) against its own
SDK's stream. Usage: python bench/bench_stream.py [N]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import textwrap
from collections.abc import Callable

from bench_overhead import interleaved

from unillm import Client

WORDS = 2000
SERVER = textwrap.dedent(f"""
    import sys
    from unillm.testing import FakeProvider, Reply
    reply = Reply(text="word " * {WORDS}, chunk_size=4, usage={{"input_tokens": 12, "output_tokens": {WORDS}}})
    with FakeProvider(reply) as fake:
        print(fake.url, flush=True)
        sys.stdin.read()
""")
MESSAGES = [{"role": "user", "content": "Write a long answer."}]


def raw_openai(url: str) -> Callable[[], int]:
    import openai
    sdk = openai.OpenAI(api_key="k", base_url=url + "/v1", max_retries=0)

    def run() -> int:
        events = sdk.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True,
                                             stream_options={"include_usage": True})
        return sum(1 for _ in events)
    return run


def raw_anthropic(url: str) -> Callable[[], int]:
    import anthropic
    sdk = anthropic.Anthropic(api_key="k", base_url=url, max_retries=0)

    def run() -> int:
        events = sdk.messages.create(model="claude-haiku-4-5", messages=MESSAGES, max_tokens=4096,
                                     stream=True)
        return sum(1 for _ in events)
    return run


def raw_google(url: str) -> Callable[[], int]:
    from google import genai
    from google.genai import types
    sdk = genai.Client(api_key="k", http_options=types.HttpOptions(
        base_url=url, retry_options=types.HttpRetryOptions(attempts=1)))
    config = types.GenerateContentConfig(max_output_tokens=4096)

    def run() -> int:
        events = sdk.models.generate_content_stream(model="gemini-2.5-flash",
                                                    contents=MESSAGES[0]["content"], config=config)
        return sum(1 for _ in events)
    return run


def raw_cohere(url: str) -> Callable[[], int]:
    import cohere
    sdk = cohere.ClientV2(api_key="k", base_url=url, max_retries=0, log_warning_experimental_features=False)

    def run() -> int:
        return sum(1 for _ in sdk.chat_stream(model="command-r-plus", messages=MESSAGES, max_tokens=4096))
    return run


def ours(url: str, provider: str, model: str) -> Callable[[], int]:
    base = url + "/v1" if provider == "openai" else url
    client = Client(providers={provider: {"base_url": base, "api_key": "k"}}, ledger="off")

    def run() -> int:
        with client.chat(model=f"{provider}/{model}", messages=MESSAGES, max_tokens=4096,
                         stream=True) as stream:
            return sum(1 for _ in stream)
    return run


def measure(label: str, raw: Callable[[], int], mine: Callable[[], int], n: int) -> None:
    chunks = mine()
    for _ in range(3):
        raw(), mine()
    times = interleaved({"raw": raw, "ours": mine}, n)
    m_raw, m_ours = statistics.median(times["raw"]), statistics.median(times["ours"])
    print(f"{label:10} {chunks} chunks   raw SDK {m_raw * 1e3:7.1f} ms ({m_raw / chunks * 1e6:5.1f} µs/chunk)"
          f"   unillm {m_ours * 1e3:7.1f} ms ({m_ours / chunks * 1e6:5.1f} µs/chunk)   ratio {m_ours / m_raw:.3f}")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    try:
        url = proc.stdout.readline().strip()
        measure("openai", raw_openai(url), ours(url, "openai", "gpt-4o-mini"), n)
        measure("anthropic", raw_anthropic(url), ours(url, "anthropic", "claude-haiku-4-5"), n)
        measure("google", raw_google(url), ours(url, "google", "gemini-2.5-flash"), n)
        measure("cohere", raw_cohere(url), ours(url, "cohere", "command-r-plus"), n)
    finally:
        proc.stdin.close()
        proc.wait(10)


if __name__ == "__main__":
    main()
