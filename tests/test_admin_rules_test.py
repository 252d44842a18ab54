"""``POST /admin/rules/test`` prices the original and the resulting request, and the saving."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx

from tests.test_server_support import Served, served, upstream  # noqa: F401 - fixtures
from unillm.pricing import PriceBook

MSG = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "say hello to the whole world"}]
M = Decimal(1_000_000)


def _h(s: Served) -> dict[str, str]:
    return {"authorization": f"Bearer {s.admin}"}


def _test(s: Served, **body: Any) -> dict[str, Any]:
    r = httpx.post(s.url + "/admin/rules/test", headers=_h(s), json={"messages": MSG, **body}, timeout=60)
    assert r.status_code == 200, r.text
    est: dict[str, Any] = r.json()["estimate"]
    return est


def _worst(model: str, prompt: int, output: int, book: PriceBook | None = None) -> Decimal:
    price = (book or PriceBook.load()).price("openai", model)
    return (price.input * prompt + price.output * output) / M


def _rule(s: Served, **rule: Any) -> None:
    r = httpx.post(s.url + "/admin/rules", headers=_h(s), json={"name": "to-mini", "when": {"model": "gpt-4o"},
                                                                 **rule})
    assert r.status_code == 201, r.text


def test_the_answer_prices_both_requests_and_the_saving(served: Served) -> None:
    _rule(served, use="gpt-4o-mini", max_tokens=50)
    est = _test(served, model="gpt-4o", max_tokens=200)
    o, res = est["original"], est["result"]
    assert o["model"] == "openai/gpt-4o" and res["model"] == "openai/gpt-4o-mini"
    assert o["prompt_tokens"] > 5 and o["prompt_tokens_source"] == "tiktoken"
    assert (o["output_tokens"], o["output_tokens_from"]) == (200, "max_tokens")
    assert (res["output_tokens"], res["output_tokens_from"]) == (50, "max_tokens")  # the rule's cap
    assert Decimal(o["cost_usd"]) == _worst("gpt-4o", o["prompt_tokens"], 200)
    assert Decimal(res["cost_usd"]) == _worst("gpt-4o-mini", res["prompt_tokens"], 50)
    assert Decimal(est["saving_usd"]) == Decimal(o["cost_usd"]) - Decimal(res["cost_usd"]) > 0


def test_without_max_tokens_the_models_documented_output_cap_is_assumed(served: Served) -> None:
    _rule(served, use="gpt-4o-mini")
    est = _test(served, model="gpt-4o")
    book = PriceBook.load()
    for side, model in (("original", "gpt-4o"), ("result", "gpt-4o-mini")):
        got = est[side]
        cap = book.price("openai", model).max_output_tokens
        assert cap and (got["output_tokens"], got["output_tokens_from"]) == (cap, "model_max_output_tokens")
        assert Decimal(got["cost_usd"]) == _worst(model, got["prompt_tokens"], cap)


def test_a_price_override_is_used_and_no_rule_means_no_saving(served: Served) -> None:
    est = _test(served, model="gpt-4o-mini", max_tokens=10)
    assert est["result"] == est["original"] and Decimal(est["saving_usd"]) == 0
    r = httpx.put(served.url + "/admin/prices/openai/gpt-4o-mini", headers=_h(served),
                  json={"input": "100", "output": "1000"})
    assert r.status_code == 200, r.text
    o = _test(served, model="gpt-4o-mini", max_tokens=10)["original"]
    assert o["price_source"].startswith("PUT /admin/prices")
    assert Decimal(o["cost_usd"]) == (100 * o["prompt_tokens"] + 1000 * 10) / M


def test_a_denied_request_costs_nothing(served: Served) -> None:
    _rule(served, deny="not this model")
    est = _test(served, model="gpt-4o", max_tokens=10)
    assert est["result"] == {"denied": True, "cost_usd": "0"}
    assert est["saving_usd"] == est["original"]["cost_usd"]
