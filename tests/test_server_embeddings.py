"""``POST /v1/embeddings``: the unmodified openai SDK's ``embeddings.create`` against the gateway."""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest

from tests.test_server_support import PROVIDER_SECRET, make_served, served, upstream  # noqa: F401
from unillm.testing import Reply
from unillm.testing.protocols.embed import fake_tokens, fake_vector
from unillm.types import Usage

openai = pytest.importorskip("openai")
pytest.importorskip("google.genai")
pytest.importorskip("cohere")

TEXTS = ["a first passage", "and a second one"]
VENDORS = [("text-embedding-3-small", "openai", {}),
           ("gemini-embedding-001", "google", {"task_type": "RETRIEVAL_DOCUMENT"}),
           ("embed-v4.0", "cohere", {"input_type": "search_document"})]


@pytest.mark.parametrize(("model", "provider", "extra"), VENDORS)
def test_sdk_embeddings_reach_every_vendor_with_cost_header_and_exact_row(served, upstream, model, provider,
                                                                          extra):
    raw = served.openai().embeddings.with_raw_response.create(model=model, input=TEXTS, extra_body=extra or None)
    resp = raw.parse()
    assert upstream.requests[-1].protocol == provider
    assert [d.embedding for d in resp.data] == [fake_vector(model, t) for t in TEXTS]  # base64 on the wire
    rec = list(served.client.ledger.records())[-1]
    tokens = fake_tokens(TEXTS) if provider != "google" else rec.input_tokens  # Google reports none
    assert resp.usage.prompt_tokens == rec.input_tokens == tokens > 0
    expected = served.client.pricebook.cost(provider, model, Usage(input_tokens=tokens)).total_usd
    assert Decimal(raw.headers["x-unillm-cost"]) == rec.total_usd == expected > 0
    assert raw.headers["x-unillm-ledger-id"] == rec.id and raw.headers["x-unillm-model"] == f"{provider}/{model}"
    assert rec.kind == "embed" and rec.inputs == 2
    assert rec.tags["user"] == "root" and rec.tags["key_id"].startswith("key_")


def test_float_format_and_dimensions(served):
    resp = served.openai().embeddings.create(model="text-embedding-3-large", input="one", dimensions=4,
                                             encoding_format="float")
    assert resp.data[0].embedding == fake_vector("text-embedding-3-large", "one", 4)


def test_batched_upstream_one_row_per_request(served, upstream):
    texts = [f"t{i}" for i in range(250)]
    raw = served.openai().embeddings.with_raw_response.create(model="gemini-embedding-001", input=texts)
    assert len(raw.parse().data) == 250 and raw.headers["x-unillm-requests"] == "3"
    rows = list(served.client.ledger.records())
    assert [r.inputs for r in rows] == [100, 100, 50]
    assert sum(r.total_usd for r in rows) == Decimal(raw.headers["x-unillm-cost"])


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "text-embedding-3-small", "input": [[1, 2, 3]]}, "input"),
    ({"model": "text-embedding-3-small", "input": []}, "input"),
    ({"model": "text-embedding-3-small", "input": "x", "base_url": "http://evil"}, "base_url"),
    ({"model": "text-embedding-3-small", "input": "x", "extra": {"api_key": "k"}}, "extra.api_key"),
    ({"model": "text-embedding-3-small", "input": "x", "metadata": {"user": "mallory"}}, "metadata.user"),
    ({"model": "text-embedding-3-small", "input": "x", "input_type": "search_query"}, "input_type"),
    ({"input": "x"}, "model"),
])
def test_hostile_or_bad_bodies_are_400_naming_the_field(served, upstream, body, param):
    r = httpx.post(served.url + "/v1/embeddings", json=body, headers={"authorization": f"Bearer {served.admin}"})
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    assert upstream.requests == []
    assert PROVIDER_SECRET not in r.text


def test_a_key_is_required_and_an_unknown_model_is_404(served, upstream):
    r = httpx.post(served.url + "/v1/embeddings", json={"model": "text-embedding-3-small", "input": "x"})
    assert r.status_code == 401
    r = httpx.post(served.url + "/v1/embeddings", json={"model": "no-such-embedder", "input": "x"},
                   headers={"authorization": f"Bearer {served.admin}"})
    assert r.status_code == 404 and upstream.requests == []


def test_key_budget_holds_at_the_gateway(served, upstream):
    key = served.key(user="u9", budget_usd=0.000001)
    sdk = served.openai(key)
    sdk.embeddings.create(model="text-embedding-3-small", input="small")
    with pytest.raises(openai.APIStatusError) as info:
        sdk.embeddings.create(model="text-embedding-3-large", input=["many words here"] * 3000)
    assert info.value.status_code == 429 and info.value.body["code"] == "budget_exceeded"
    assert len(upstream.requests) == 1
    assert list(served.client.ledger.records())[-1].status == "budget_denied"


def test_a_cache_hit_is_free_and_said_so(upstream, tmp_path):
    for s in make_served(upstream, tmp_path, cache=f"disk://{tmp_path}/c"):
        sdk = s.openai()
        first = sdk.embeddings.with_raw_response.create(model="embed-v4.0", input=TEXTS,
                                                        extra_body={"input_type": "search_query"})
        again = sdk.embeddings.with_raw_response.create(model="embed-v4.0", input=TEXTS,
                                                        extra_body={"input_type": "search_query"})
        assert again.headers["x-unillm-cached"] == "true" and Decimal(again.headers["x-unillm-cost"]) == 0
        assert [d.embedding for d in again.parse().data] == [d.embedding for d in first.parse().data]
        assert len(upstream.requests) == 1


async def test_async_sdk(served, upstream):
    client = served.aopenai()
    resp = await client.embeddings.create(model="mistral-embed", input=TEXTS)
    assert [d.embedding for d in resp.data] == [fake_vector("mistral-embed", t) for t in TEXTS]
    await client.close()


def test_upstream_error_maps_to_the_sdks_error(served, upstream):
    upstream.queue(Reply(status=400, error="bad embed"))
    with pytest.raises(openai.BadRequestError):
        served.openai().embeddings.create(model="text-embedding-3-small", input="x")


def test_unillm_serve_process_serves_the_sdks_embeddings_for_three_vendors(tmp_path):
    """The bar as a user meets it: ``unillm keys create`` and ``unillm serve`` as processes."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    from tests.servers import free_port, wait_ready
    from unillm import Client
    from unillm.testing import FakeProvider
    repo = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("UNILLM_")}
    env.update(PYTHONPATH=str(repo), UNILLM_HOME=str(tmp_path / "home"))
    with FakeProvider() as fake:
        lines = [f"ledger = {json.dumps(f'sqlite:///{tmp_path}/l.db')}", 'cache = "off"']
        for name, table in fake.providers("openai", "google", "cohere").items():
            lines += ["", f"[providers.{name}]", *(f"{k} = {json.dumps(v)}" for k, v in table.items()),
                      "max_retries = 0"]
        (tmp_path / "unillm.toml").write_text("\n".join(lines) + "\n")
        made = subprocess.run([sys.executable, "-m", "unillm", "keys", "create", "--user", "ann"], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=120, check=True)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "unillm", "serve", "--config", "unillm.toml", "--port",
                                   str(port)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        try:
            wait_ready(f"http://127.0.0.1:{port}/health", server)
            sdk = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=made.stdout.strip(), max_retries=0)
            got = {}
            for model, provider, extra in VENDORS:
                raw = sdk.embeddings.with_raw_response.create(model=model, input=TEXTS, extra_body=extra or None)
                assert [d.embedding for d in raw.parse().data] == [fake_vector(model, t) for t in TEXTS]
                got[provider] = (Decimal(raw.headers["x-unillm-cost"]), raw.headers["x-unillm-ledger-id"])
        finally:
            server.terminate()
            server.communicate(timeout=30)
    ledger = Client(ledger=f"sqlite:///{tmp_path}/l.db")
    rows = {r.id: r for r in ledger.ledger.records()}
    for model, provider, _ in VENDORS:
        cost, row_id = got[provider]
        row = rows[row_id]
        assert row.provider == provider and row.kind == "embed" and row.tags["user"] == "ann"
        assert row.total_usd == cost == ledger.pricebook.cost(provider, model,
                                                              Usage(input_tokens=row.input_tokens)).total_usd > 0


def test_embeddings_are_counted_in_the_gateways_metrics(upstream, tmp_path):
    pytest.importorskip("prometheus_client")
    from prometheus_client.parser import text_string_to_metric_families
    for s in make_served(upstream, tmp_path, cache="memory", server={"metrics": {"enabled": True}}):
        sdk = s.openai()
        for _ in range(2):  # the second is a cache hit
            sdk.embeddings.create(model="text-embedding-3-small", input=TEXTS)
        upstream.queue(Reply(status=500))
        with pytest.raises(openai.InternalServerError):
            sdk.embeddings.create(model="text-embedding-3-small", input=["x"])
        text = httpx.get(s.url + "/metrics", headers={"authorization": f"Bearer {s.admin}"}).text
        rows = [r for r in s.client.ledger.records() if r.status == "ok"]
    found = {(x.name, tuple(sorted(x.labels.items()))): x.value
             for f in text_string_to_metric_families(text) for x in f.samples}

    def total(name: str, **labels: str) -> float:
        return sum(v for (n, ls), v in found.items() if n == name and set(labels.items()) <= set(ls))
    assert total("unillm_requests_total", model="text-embedding-3-small", status="ok") == 1
    assert total("unillm_requests_total", model="text-embedding-3-small", status="cache_hit") == 1
    assert total("unillm_requests_total", model="text-embedding-3-small", status="error") == 1
    assert total("unillm_tokens_total", model="text-embedding-3-small", type="input") == fake_tokens(TEXTS)
    assert total("unillm_cost_usd_total", model="text-embedding-3-small") == float(rows[0].total_usd)
