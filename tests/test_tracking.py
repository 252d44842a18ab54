"""`unillm.track` and `client.ledger.record`: usage from code that calls SDKs directly."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

import unillm
from unillm import Client, errors
from tests.conftest import ref


@pytest.fixture
def client(tmp_path: Path) -> Client:
    return Client(ledger=f"sqlite:///{tmp_path / 'ledger.db'}")


def _sdk_objects():
    from anthropic.types import Message
    from cohere.v2 import V2ChatResponse
    from google.genai.types import GenerateContentResponse
    from openai.types.chat import ChatCompletion
    return {
        "openai": ChatCompletion.model_validate(ref("openai_chat_completion_captured")),
        "anthropic": Message.model_validate(ref("anthropic_message_captured")),
        "google": GenerateContentResponse.model_validate(
            {k: v for k, v in ref("gemini_generate_content_thinking").items() if k != "turnToken"}),
        "cohere": V2ChatResponse.model_validate(ref("cohere_v2_chat_api_reference")),
    }


def test_track_sdk_objects_of_all_four_vendors(client: Client) -> None:
    objs = _sdk_objects()
    recs = {p: unillm.track(obj, model="command-r-plus" if p == "cohere" else None, client=client,
                            tags={"project": "direct"})
            for p, obj in objs.items()}
    assert {p: r.provider for p, r in recs.items()} == {p: p for p in objs}
    # the same converters as the adapters: OpenAI 14 in / 37 out at gpt-4o-2024-08-06 prices
    o = recs["openai"]
    assert (o.input_tokens, o.output_tokens) == (14, 37)
    assert o.total_usd == Decimal(14) * Decimal("2.50") / 10**6 + Decimal(37) * Decimal("10.00") / 10**6
    # Gemini thinking tokens are billed as output; Cohere bills billed_units, not tokens
    g = recs["google"]
    assert (g.input_tokens, g.output_tokens, g.reasoning_tokens) == (9, 21, 20)
    c = recs["cohere"]
    assert c.input_tokens == ref("cohere_v2_chat_api_reference")["usage"]["billed_units"]["input_tokens"]
    assert all(r.tags["project"] == "direct" for r in recs.values())
    assert len(list(client.ledger.records())) == 4


def test_track_json_text_and_dicts(client: Client) -> None:
    body = ref("anthropic_message_captured")
    rec = unillm.track(json.dumps(body), client=client)
    assert rec.provider == "anthropic" and rec.model == "claude-sonnet-4-5-20250929"
    assert rec.total_usd > 0
    rec2 = unillm.track(ref("openai_usage_prompt_caching_doc_fragment") | {"model": "gpt-4o", "choices": []},
                        provider="openai", client=client)
    assert (rec2.input_tokens, rec2.cache_read_tokens) == (86, 1920)


@pytest.mark.parametrize("response,kw,param", [
    ("{not json", {}, "response"),
    ({"hello": "world"}, {}, "provider"),
    (None, {}, "response"),
    ({"choices": [], "model": "gpt-4o"}, {}, "usage"),
    (ref("openai_chat_completion_captured"), {"provider": "opneai"}, "provider"),
])
def test_track_bad_input_names_the_field(client: Client, response, kw, param) -> None:
    with pytest.raises(errors.InvalidRequestError) as info:
        unillm.track(response, client=client, **kw)
    assert info.value.param == param
    assert list(client.ledger.records()) == []


def test_ledger_record_prices_external_usage(client: Client) -> None:
    rec = client.ledger.record(provider="openai", model="gpt-4o", input_tokens=1000, output_tokens=500,
                               cache_read_tokens=2000, tags={"user": "ext"})
    price = client.pricebook.price("openai", "gpt-4o")
    expected = (Decimal(1000) * price.input + Decimal(2000) * price.cached_input
                + Decimal(500) * price.output) / 10**6
    assert rec.total_usd == expected
    with pytest.raises(errors.InvalidRequestError) as info:
        client.ledger.record(provider="openai", model="gpt-4o", input_tokens=-1, output_tokens=5)
    assert info.value.param == "input_tokens"
    with pytest.raises(errors.MissingPriceError):
        client.ledger.record(provider="openai", model="gpt-nope", input_tokens=1, output_tokens=1)
