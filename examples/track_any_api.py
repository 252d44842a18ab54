"""Meter every API an app pays for, in one line: `unillm.observe()`.

Runs offline: a raw OpenAI SDK call goes to unillm's FakeProvider, an httpx call to a fake
per-call search API and a requests call to a fake per-character TTS API (both `FakeApi`
on 127.0.0.1), inside nested sections. Then the ledger's section tree, with costs.
"""

from __future__ import annotations

import tempfile

import httpx
import openai
import requests

import unillm
from unillm import Client
from unillm.testing import FakeApi, FakeProvider, Reply

with FakeProvider() as fake, FakeApi() as search, FakeApi() as tts, tempfile.TemporaryDirectory() as tmp:
    client = Client(ledger=f"sqlite:///{tmp}/ledger.db", providers=fake.providers("openai"))
    apis = [
        {"name": "search:query", "match": {"host": search.host, "path": "/v1/search"}, "per_call": "0.005"},
        {"name": "voices:tts", "match": {"host": tts.host, "method": "POST", "path": "/v1/text-to-speech/*"},
         "per_1k_chars": "0.30", "units": {"chars": "request.json:text"}},
    ]
    with unillm.observe(client, apis=apis):
        raw = openai.OpenAI(base_url=fake.base_url("openai"), api_key="sk-fake")  # untouched app code
        with client.section("agent:research"):
            fake.queue(Reply(text="Rayleigh scattering.", usage={"input_tokens": 1200, "output_tokens": 80}))
            with client.section("llm:query"):
                raw.chat.completions.create(model="gpt-4o-mini",
                                            messages=[{"role": "user", "content": "Why is the sky blue?"}])
            with client.section("tool:search"):
                httpx.get(search.url + "/v1/search", params={"q": "rayleigh scattering"})
                httpx.get(search.url + "/v1/search", params={"q": "mie scattering"})
        with client.section("agent:narrate"):
            requests.post(tts.url + "/v1/text-to-speech/voice-1",
                          json={"text": "The sky is blue because air scatters short wavelengths. " * 10})

    print(f"{'section':<28} {'calls':>5} {'cost (USD)':>14}")
    for row in client.ledger.summary(by=["section"], rollup=True):
        depth = (row["section"] or "").count("/")
        label = "  " * depth + (row["section"] or "(none)").rsplit("/", 1)[-1]
        print(f"{label:<28} {row['calls']:>5} {row['cost_usd']:>14}")
    client.close()
