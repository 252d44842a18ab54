"""Price overrides over GET/PUT /admin/prices/{provider}/{model}: the next call is priced with them."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from unillm import Client
from unillm.ledger import open_store
from unillm.price_overrides import PriceOverrides
from unillm.testing import FakeProvider

from .test_server_support import Served, served, upstream  # noqa: F401 - fixtures

MSG = [{"role": "user", "content": "hi"}]
URL = "/admin/prices/openai/gpt-4o-mini"


def _cost(served: Served) -> tuple[Decimal, int, int]:
    raw = served.openai().chat.completions.with_raw_response.create(model="openai/gpt-4o-mini", messages=MSG)
    usage = raw.parse().usage
    return Decimal(raw.headers["x-unillm-cost"]), usage.prompt_tokens, usage.completion_tokens


def test_put_override_prices_the_next_call(served: Served) -> None:
    auth = {"authorization": f"Bearer {served.admin}"}
    before, _, _ = _cost(served)
    r = httpx.put(served.url + URL, headers=auth, json={"input": "100", "output": "200", "note": "negotiated"})
    assert r.status_code == 200, r.text
    assert r.json()["since"] == date.today().isoformat() or r.json()["since"]
    cost, pin, pout = _cost(served)
    assert cost == (Decimal(100) * pin + Decimal(200) * pout) / 1_000_000 and cost != before
    got = httpx.get(served.url + URL, headers=auth).json()
    assert got["current"]["input"] == "100" and got["current"]["source"].startswith("PUT /admin/prices")
    assert len(got["overrides"]) == 1 and got["overrides"][0]["note"] == "negotiated"
    # a future override does not apply yet
    tomorrow = (date.today() + timedelta(days=2)).isoformat()
    r = httpx.put(served.url + URL, headers=auth, json={"input": "1", "output": "1", "since": tomorrow})
    assert r.status_code == 200
    assert _cost(served)[0] == cost
    rows = served.client.ledger.store
    assert rows is not None


def test_bad_override_gets_the_price_file_message(served: Served) -> None:
    auth = {"authorization": f"Bearer {served.admin}"}
    r = httpx.put(served.url + URL, headers=auth, json={"input": "0.1"})
    assert r.status_code == 400 and "missing 'output'" in r.json()["error"]["message"]
    r = httpx.put(served.url + URL, headers=auth, json={"input": "0.1", "output": "0.2", "inptu": "1"})
    assert r.status_code == 400 and "did you mean 'input'" in r.json()["error"]["message"]
    r = httpx.put(served.url + URL, headers=auth, json={"input": "-1", "output": "0.2"})
    assert r.status_code == 400 and 'openai."gpt-4o-mini".input' in r.json()["error"]["message"]
    r = httpx.put(served.url + URL, headers=auth, json={"input": "1", "output": "1", "since": "soon"})
    assert r.status_code == 400 and "since" in r.json()["error"]["message"]
    r = httpx.put(served.url + "/admin/prices/nope/x", headers=auth, json={"input": "1", "output": "1"})
    assert r.status_code == 404
    tenant = served.key()
    r = httpx.put(served.url + URL, headers={"authorization": f"Bearer {tenant}"}, json={"input": "1", "output": "1"})
    assert r.status_code == 403
    assert httpx.get(served.url + URL, headers=auth).json()["overrides"] == []


def test_another_process_sees_the_override(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/l.db"
    with FakeProvider() as fake:
        client = Client(providers=fake.providers(), ledger=url)
        client.chat("openai/gpt-4o-mini", MSG)
        store = open_store(url)
        PriceOverrides(store).put("openai", "gpt-4o-mini", {"input": "7", "output": "9"})
        store.close()
        client._overrides.expire()  # noqa: SLF001 - stands in for REFRESH_SECONDS passing
        resp = client.chat("openai/gpt-4o-mini", MSG)
        u = resp.usage
        assert resp.cost is not None
        assert resp.cost.total_usd == (Decimal(7) * u.input_tokens + Decimal(9) * u.output_tokens) / 1_000_000
        # a fresh client (a new worker) prices its first call with it
        fresh = Client(providers=fake.providers(), ledger=url)
        again = fresh.chat("openai/gpt-4o-mini", MSG)
        assert again.cost is not None and again.cost.total_usd == resp.cost.total_usd
        fresh.close()
        client.close()


def test_override_of_an_alias_and_of_its_model() -> None:
    from unillm.pricing import PriceBook
    book = PriceBook.load()
    pm = book.find("openai", "gpt-4o-mini")
    assert pm is not None
    from unillm.price_overrides import check_entry
    from unillm.pricing import _build_price
    since, table = check_entry("openai", "gpt-4o-mini", {"input": "5", "output": "6", "since": "2020-01-01"})
    price = _build_price("openai", "gpt-4o-mini", {**table, "since": since}, "t", "k", "override", None)
    over = book.overlaid({("openai", "gpt-4o-mini"): (price,)})
    assert over.price("openai", "gpt-4o-mini").input == Decimal(5)
    assert book.price("openai", "gpt-4o-mini").input != Decimal(5)  # the base book is untouched
    snapshot = "gpt-4o-mini-2024-07-18"
    if book.find("openai", snapshot) is pm:  # a name resolving to the same entry is overridden too
        assert over.price("openai", snapshot).input == Decimal(5)
