"""What a type checker sees of the public API: checked by ``mypy`` in .ci/run, never run.

Each ``assert_type`` fails the check when an overload or property loses its type, a
regression back to ``Any`` included (``Expression is of type "Any", not "ChatResponse"``).
"""

from __future__ import annotations

from decimal import Decimal

from typing_extensions import assert_type

from unillm import AsyncChatStream, ChatResponse, ChatStream, Client, StreamChunk
from unillm.budgets import Budgets
from unillm.cache import CacheBackend
from unillm.ledger import Ledger
from unillm.pricing import PriceBook

MESSAGES = [{"role": "user", "content": "hi"}]


def sync_calls(client: Client, flag: bool) -> None:
    assert_type(client.chat("gpt-4o-mini", MESSAGES), ChatResponse)
    assert_type(client.chat("gpt-4o-mini", MESSAGES, stream=False), ChatResponse)
    assert_type(client.chat("gpt-4o-mini", MESSAGES, stream=True), ChatStream)
    assert_type(client.chat("gpt-4o-mini", MESSAGES, stream=flag), ChatResponse | ChatStream)
    with client.chat("gpt-4o-mini", MESSAGES, stream=True) as stream:
        assert_type(stream, ChatStream)
        for chunk in stream:
            assert_type(chunk, StreamChunk)
    with Client() as c:
        assert_type(c, Client)


async def async_calls(client: Client) -> None:
    assert_type(await client.achat("gpt-4o-mini", MESSAGES), ChatResponse)
    assert_type(await client.achat("gpt-4o-mini", MESSAGES, stream=True), AsyncChatStream)
    async with await client.achat("gpt-4o-mini", MESSAGES, stream=True) as stream:
        async for chunk in stream:
            assert_type(chunk, StreamChunk)


def parts(client: Client) -> None:
    assert_type(client.ledger, Ledger)
    assert_type(client.pricebook, PriceBook)
    assert_type(client.cache, CacheBackend)
    assert_type(client.budgets, Budgets)
    response = client.chat("gpt-4o-mini", MESSAGES)
    total: Decimal | None = response.cost.total_usd if response.cost else None
    del total


def stores(path: str, url: str) -> None:
    """Both backends satisfy the store protocol (each has its own Dialect subclass)."""
    from unillm.ledger import LedgerStore, NullStore
    from unillm.ledger.postgres import PostgresStore
    from unillm.ledger.sqlite import SQLiteStore

    for store in (SQLiteStore(path), PostgresStore.from_url(url), NullStore()):
        as_protocol: LedgerStore = store
        del as_protocol
