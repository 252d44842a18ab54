"""`Client.embed` / `aembed`: the real openai, google-genai and cohere SDKs against FakeProvider."""

from __future__ import annotations

import asyncio
import math
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from unillm import Client, errors
from unillm.embeddings.types import decode_base64
from unillm.testing import FakeProvider, Reply
from unillm.testing.protocols.embed import fake_tokens, fake_vector
from unillm.types import Usage

pytest.importorskip("openai")
pytest.importorskip("google.genai")
pytest.importorskip("cohere")

TEXTS = ["the cat sat on the mat", "Ünïcödé and 数字 123", "short"]
#: model, provider, options, the vendor's most inputs a request
VENDORS = [("text-embedding-3-small", "openai", {}, 2048),
           ("gemini-embedding-001", "google", {"task_type": "RETRIEVAL_DOCUMENT"}, 100),
           ("embed-v4.0", "cohere", {"input_type": "search_document"}, 96),
           ("mistral-embed", "mistral", {}, 2048)]


def make(fake: FakeProvider, tmp_path: Path, **kw: Any) -> Client:
    retries = kw.pop("max_retries", 0)
    providers = {n: {**t, "max_retries": retries} for n, t in fake.providers().items()}
    return Client(providers=providers, ledger=f"sqlite:///{tmp_path}/l.db", sleep=lambda s: None, **kw)


def price(client: Client, provider: str, model: str, tokens: int) -> Decimal:
    return client.pricebook.cost(provider, model, Usage(input_tokens=tokens)).total_usd


@pytest.mark.parametrize(("model", "provider", "opts", "_max"), VENDORS)
def test_every_vendor_returns_its_vectors_priced_exactly(fake, tmp_path, model, provider, opts, _max):
    client = make(fake, tmp_path)
    resp = client.embed(model, TEXTS, **opts)
    assert fake.requests[-1].protocol == ("openai" if provider == "mistral" else provider)
    assert [d.index for d in resp.data] == [0, 1, 2]
    assert resp.vectors == [fake_vector(model, t) for t in TEXTS]
    assert resp.provider == provider and resp.model == model and not resp.cached
    # Google reports no token count: counted (o200k_base), marked as the estimate it is
    tokens = fake_tokens(TEXTS) if provider != "google" else resp.usage.prompt_tokens
    assert resp.usage.prompt_tokens == tokens > 0
    assert resp.usage.source == ("estimate" if provider == "google" else "provider")
    expected = price(client, provider, model, tokens)
    assert resp.cost.total_usd == expected > 0
    (row,) = client.ledger.records()
    assert (row.id, row.kind, row.inputs, row.provider, row.model) == (resp.ledger_id, "embed", 3, provider, model)
    assert row.input_tokens == tokens and row.output_tokens == 0 and row.total_usd == expected
    assert row.status == "ok" and row.call_id is not None


def test_options_reach_each_vendor_in_its_own_name(fake, tmp_path):
    client = make(fake, tmp_path)
    assert len(client.embed("text-embedding-3-large", "x", dimensions=4).data[0].embedding) == 4
    assert fake.requests[-1].json["dimensions"] == 4
    client.embed("gemini-embedding-001", "x", dimensions=4, task_type="RETRIEVAL_QUERY")
    sent = fake.requests[-1].json["requests"][0]
    assert sent["outputDimensionality"] == 4 and sent["taskType"] == "RETRIEVAL_QUERY"
    client.embed("embed-v4.0", "x", dimensions=256, input_type="search_query")
    assert fake.requests[-1].json["input_type"] == "search_query"
    assert fake.requests[-1].json["output_dimension"] == 256
    resp = client.embed("mistral-embed", "x", user="u1")
    assert fake.requests[-1].json["user"] == "u1" and resp.cost is not None


@pytest.mark.parametrize(("call", "param", "where"), [
    (dict(model="text-embedding-3-small", input_type="search_query"), "input_type", "openai"),
    (dict(model="mistral-embed", task_type="RETRIEVAL_QUERY"), "task_type", "mistral"),
    (dict(model="gemini-embedding-001", input_type="search_query"), "input_type", "google"),
    (dict(model="embed-v4.0", input_type="search_query", task_type="CLUSTERING"), "task_type", "cohere"),
])
def test_an_option_a_vendor_lacks_is_refused_naming_it(fake, tmp_path, call, param, where):
    client = make(fake, tmp_path)
    with pytest.raises(errors.UnsupportedParamError) as info:
        client.embed(input="x", **call)
    assert info.value.param == param and where in str(info.value) and param in str(info.value)
    assert fake.requests == []


@pytest.mark.parametrize(("kwargs", "param", "text"), [
    (dict(model="embed-v4.0"), "input_type", "search_document, search_query"),
    (dict(model="text-embedding-3-small", input_type="document"), "input_type", "search_document"),
    (dict(model="text-embedding-3-small", encoding_format="int8"), "encoding_format", "base64"),
    (dict(model="text-embedding-3-small", dimensions=0), "dimensions", "greater than 0"),
    (dict(model="text-embedding-3-small", dimension=8), "dimension", "did you mean 'dimensions'"),
    (dict(model="claude-sonnet-4-5"), "model", "serves no embeddings"),
])
def test_bad_options_get_one_precise_error_before_sending(fake, tmp_path, kwargs, param, text):
    client = make(fake, tmp_path)
    with pytest.raises(errors.InvalidRequestError) as info:
        client.embed(input="x", **kwargs)
    assert info.value.param == param and text in str(info.value)
    assert fake.requests == []


@pytest.mark.parametrize("bad", [[], [""], ["ok", 3], 42, [[1, 2, 3]]])
def test_bad_input_is_refused(fake, tmp_path, bad):
    with pytest.raises(errors.InvalidRequestError) as info:
        make(fake, tmp_path).embed("text-embedding-3-small", bad)
    assert info.value.param == "input"


@pytest.mark.parametrize(("model", "provider", "opts", "most"), VENDORS[:3])
def test_batched_to_the_vendors_most_inputs_one_row_per_request(fake, tmp_path, model, provider, opts, most):
    client = make(fake, tmp_path)
    n = 2 * most + 7
    texts = [f"input number {i}" for i in range(n)]
    resp = client.embed(model, texts, **opts)
    sizes = [len(r.json.get("input") or r.json.get("requests") or r.json.get("texts")) for r in fake.requests]
    assert sizes == [most, most, 7]
    assert resp.vectors == [fake_vector(model, t) for t in texts]
    rows = list(client.ledger.records())
    assert [r.inputs for r in rows] == sizes and resp.requests == 3 and resp.ledger_ids == [r.id for r in rows]
    assert len({r.call_id for r in rows}) == 1  # one embed() call
    assert sum(r.total_usd for r in rows) == resp.cost.total_usd
    assert sum(r.input_tokens for r in rows) == resp.usage.prompt_tokens
    for row in rows:
        assert row.total_usd == price(client, provider, model, row.input_tokens)


def test_ten_thousand_short_inputs(fake, tmp_path):
    client = make(fake, tmp_path)
    texts = [f"doc {i}: a short passage" for i in range(10_000)]
    resp = client.embed("text-embedding-3-small", texts)
    rows = list(client.ledger.records())
    assert len(rows) == len(fake.requests) == math.ceil(10_000 / 2048) == resp.requests
    assert sum(r.inputs for r in rows) == 10_000 == len(resp.data)
    assert sum(r.total_usd for r in rows) == resp.cost.total_usd == price(
        client, "openai", "text-embedding-3-small", fake_tokens(texts))
    assert resp.vectors[9_999] == fake_vector("text-embedding-3-small", texts[9_999])


def test_base64_is_openais_float32_and_decodes_to_the_vectors(fake, tmp_path):
    resp = make(fake, tmp_path).embed("embed-v4.0", TEXTS, input_type="clustering", encoding_format="base64")
    assert all(isinstance(d.embedding, str) for d in resp.data)
    assert [decode_base64(d.embedding) for d in resp.data] == [fake_vector("embed-v4.0", t) for t in TEXTS]


@pytest.mark.parametrize(("model", "opts"), [("gemini-embedding-001", {}), ("text-embedding-3-small", {})])
def test_cache_stores_vectors_and_a_hit_replays_them_exactly(fake, tmp_path, model, opts):
    client = make(fake, tmp_path, cache=f"disk://{tmp_path}/cache")
    first = client.embed(model, TEXTS, **opts)
    again = client.embed(model, TEXTS, **opts)
    assert len(fake.requests) == 1
    assert again.cached and again.vectors == first.vectors and again.cost.total_usd == 0
    assert again.requests == 0 and again.cache_status == "hit"
    assert again.usage.prompt_tokens == first.usage.prompt_tokens  # what it was made with, as chat
    rows = list(client.ledger.records())
    assert [r.status for r in rows] == ["ok", "cache_hit"]
    assert rows[1].saved_usd == rows[0].total_usd > 0 and rows[0].cache_status == "stored"
    # other options, another key: sent again
    client.embed(model, TEXTS, dimensions=4)
    assert len(fake.requests) == 2
    # a chat call is never served an embedding entry
    client.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": TEXTS[0]}])
    assert len(fake.requests) == 3


def test_budget_holds_the_exact_input_cost_before_sending(fake, tmp_path):
    texts = ["exactly priced"] * 50
    cost = price(Client(), "openai", "text-embedding-3-large", fake_tokens(texts))
    client = make(fake, tmp_path, budgets=[{"name": "emb", "limit_usd": str(cost), "period": "monthly"}])
    client.embed("text-embedding-3-large", texts)      # the count is exact: the limit pays for it
    assert client.budgets.used_fraction({}) == 1.0
    with pytest.raises(errors.BudgetExceededError) as info:
        client.embed("text-embedding-3-large", "one more")
    assert info.value.budget == "emb"
    assert len(fake.requests) == 1                      # refused before sending
    assert [r.status for r in client.ledger.records()] == ["ok", "budget_denied"]


def test_rules_with_kind_embed_apply_and_chat_rules_do_not(fake, tmp_path):
    client = make(fake, tmp_path, rules=[
        {"name": "chat-only", "when": {}, "use": "gpt-4o-mini"},
        {"name": "cheaper vectors", "when": {"kind": "embed", "model": "text-embedding-3-large"},
         "use": "text-embedding-3-small"},
        {"name": "no long", "when": {"kind": "embed", "prompt_tokens_above": 1000}, "deny": "too long"},
    ])
    resp = client.embed("text-embedding-3-large", "x")
    assert resp.model == "text-embedding-3-small" and resp.rule == "cheaper vectors"
    assert fake.requests[-1].json["model"] == "text-embedding-3-small"
    row = list(client.ledger.records())[-1]
    assert row.rule == "cheaper vectors" and row.requested_model == "text-embedding-3-large"
    with pytest.raises(errors.RuleDeniedError):
        client.embed("mistral-embed", ["word " * 1500])
    assert len(fake.requests) == 1
    client.chat(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert fake.requests[-1].json["model"] == "gpt-4o-mini"  # the chat rule still holds for chat


def test_an_embed_rule_cannot_cap_tokens():
    with pytest.raises(errors.ConfigError, match="embed rule"):
        Client(rules=[{"name": "r", "when": {"kind": "embed"}, "max_tokens": 5}], ledger="off")


def test_retries_then_fallbacks_each_attempt_a_row(fake, tmp_path):
    client = make(fake, tmp_path, max_retries=1,
                  fallbacks=[{"model": "text-embedding-3-small", "then": ["mistral/mistral-embed"]}])
    fake.queue(Reply(status=500), Reply(status=503))
    resp = client.embed("text-embedding-3-small", TEXTS)
    assert resp.provider == "mistral" and resp.vectors == [fake_vector("mistral-embed", t) for t in TEXTS]
    rows = list(client.ledger.records())
    assert [(r.provider, r.status, r.retried) for r in rows] == [
        ("openai", "error", True), ("openai", "error", False), ("mistral", "ok", False)]
    assert rows[-1].fallback_from == "openai/text-embedding-3-small" and rows[-1].kind == "embed"


def test_an_auth_error_is_not_masked_and_is_recorded(fake, tmp_path):
    client = make(fake, tmp_path)
    fake.queue(Reply(status=401))
    with pytest.raises(errors.AuthenticationError):
        client.embed("embed-v4.0", "x", input_type="search_query")
    assert [r.status for r in client.ledger.records()] == ["error"]


def test_unpriced_model_is_refused_and_recorded(fake, tmp_path):
    client = make(fake, tmp_path)
    with pytest.raises(errors.MissingPriceError):
        client.embed("embed-english-v3.0", "x", input_type="search_query")
    assert fake.requests == [] and [r.status for r in client.ledger.records()] == ["error"]


def test_aembed_matches_embed(fake, tmp_path):
    client = make(fake, tmp_path, cache=f"disk://{tmp_path}/cache")
    texts = [f"t{i}" for i in range(150)]

    async def run() -> Any:
        out = await client.aembed("gemini-embedding-001", texts, task_type="CLUSTERING")
        hit = await client.aembed("gemini-embedding-001", texts, task_type="CLUSTERING")
        await client.aclose()
        return out, hit
    out, hit = asyncio.run(run())
    sync = make(FakeProvider().start(), tmp_path / "s").embed("gemini-embedding-001", texts, task_type="CLUSTERING")
    assert out.vectors == sync.vectors == hit.vectors and hit.cached and out.requests == 2
    assert out.cost.total_usd == sync.cost.total_usd


def test_embed_and_aembed_share_a_signature():
    import inspect
    sync, asyn = inspect.signature(Client.embed), inspect.signature(Client.aembed)
    assert list(sync.parameters) == list(asyn.parameters)


def test_openai_requests_stay_under_its_token_limit_per_request(fake, tmp_path):
    client = make(fake, tmp_path)
    long = "lorem ipsum dolor sit amet " * 2000           # ~10,000 tokens each
    texts = [long + str(i) for i in range(40)]
    resp = client.embed("text-embedding-3-small", texts)
    per_request = [fake_tokens(r.json["input"]) for r in fake.requests]
    assert len(per_request) > 1 and max(per_request) <= 300_000
    assert sum(len(r.json["input"]) for r in fake.requests) == 40 == len(resp.data)
    assert [r.inputs for r in client.ledger.records()] == [len(r.json["input"]) for r in fake.requests]


def test_shadow_embed_rule_is_recorded_not_applied(fake, tmp_path):
    client = make(fake, tmp_path, rules=[{"name": "try mistral", "mode": "shadow", "when": {"kind": "embed"},
                                          "use": "mistral-embed"}])
    resp = client.embed("text-embedding-3-small", "x")
    assert resp.provider == "openai" and list(client.ledger.records())[-1].shadow_rule == "try mistral"


def test_ledger_summary_splits_chat_from_embeddings(fake, tmp_path):
    client = make(fake, tmp_path)
    client.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
    resp = client.embed("gemini-embedding-001", [f"t{i}" for i in range(150)])
    rows = {r["kind"]: r for r in client.ledger.summary(by=["kind"])}
    assert set(rows) == {"chat", "embed"} and rows["embed"]["calls"] == 2
    assert Decimal(rows["embed"]["cost_usd"]) == resp.cost.total_usd
    (only,) = client.ledger.summary(by=["provider"], where={"kind": "embed"})
    assert only["provider"] == "google"


def test_a_vendor_answering_float_lists_is_replayed_exactly_from_the_cache(fake, tmp_path):
    client = make(fake, tmp_path, cache=f"disk://{tmp_path}/cache")
    floats = [0.1, 1 / 3, -2.5e-300, 123456.789012345]
    fake.queue(Reply(body={"object": "list", "model": "mistral-embed", "usage": {"prompt_tokens": 2},
                           "data": [{"object": "embedding", "index": 0, "embedding": floats}]}))
    first = client.embed("mistral-embed", "exact")
    again = client.embed("mistral-embed", "exact")
    assert first.vectors == again.vectors == [floats] and again.cached and len(fake.requests) == 1


@pytest.mark.parametrize(("extra", "param"), [
    ({"model": "text-embedding-3-large"}, "extra.model"), ({"input": ["other"]}, "extra.input"),
    ({"extra_body": {"encoding_format": "float"}}, "extra.extra_body.encoding_format"),
    ({"api_key": "sk-x"}, "extra.api_key"), ({"embedding_types": ["int8"]}, "extra.embedding_types"),
])
def test_extra_cannot_change_what_is_embedded_or_where(fake, tmp_path, extra, param):
    with pytest.raises(errors.InvalidRequestError) as info:
        make(fake, tmp_path).embed("text-embedding-3-small", "x", extra=extra)
    assert info.value.param == param and fake.requests == []


def test_extra_passes_vendor_parameters(fake, tmp_path):
    make(fake, tmp_path).embed("embed-v4.0", "x", input_type="search_query", extra={"truncate": "END"})
    assert fake.requests[-1].json["truncate"] == "END"
