"""One Client used from several event loops (each `asyncio.run`, pytest-asyncio's per-test
loops): every loop gets its own async SDK clients, so no call meets a closed loop."""

from __future__ import annotations

import asyncio

import pytest

from unillm import Client
from unillm.testing import FakeProvider

HI = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash", "command-r"])
def test_one_client_in_two_asyncio_runs(fake: FakeProvider, model: str) -> None:
    client = Client(providers=fake.providers(), ledger="off")

    async def once() -> str:
        r = await client.achat(model=model, messages=HI)
        chunks = [c async for c in await client.achat(model=model, messages=HI, stream=True)]
        return (r.content or "") + str(len(chunks))

    first = asyncio.run(once())
    second = asyncio.run(once())        # a new loop: the first loop's connections are gone
    assert first == second and first
    assert len(fake.requests) == 4
    asyncio.run(client.aclose())
