"""``ANY /proxy/{path}`` with ``x-target-url``: the real anthropic and openai SDKs pointed at the
gateway's passthrough reach an allow-listed upstream with the operator's credential injected,
are priced from the vendor's usage (JSON and SSE), and nothing is ever sent to an address the
operator did not allow (outside the list, a path climbing out, a redirect, a name resolving
to loopback)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_server_support import PROVIDER_SECRET, Served, make_served
from tests.test_server_trust import Listener
from unillm.testing import FakeApi, FakeProvider, Reply

anthropic = pytest.importorskip("anthropic")
openai = pytest.importorskip("openai")

USAGE = {"input_tokens": 1000, "cache_read_tokens": 200, "output_tokens": 50}
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def fake() -> Iterator[FakeProvider]:
    with FakeProvider(api_key=PROVIDER_SECRET) as f:
        yield f


def _serve(fake: FakeProvider, tmp_path: Path, upstreams: list[dict[str, Any]], **settings: Any) -> Iterator[Served]:
    """A gateway (every provider pointed at ``fake``) whose ``/proxy`` forwards to ``upstreams``."""
    yield from make_served(fake, tmp_path, server={"upstreams": upstreams, **settings.pop("server", {})}, **settings)


@pytest.fixture
def served(fake: FakeProvider, tmp_path: Path) -> Iterator[Served]:
    yield from _serve(fake, tmp_path, [
        {"name": "anthropic", "base_url": fake.url, "auth": "x-api-key", "api_key": PROVIDER_SECRET},
        {"name": "openai", "base_url": fake.url + "/v1", "auth": "bearer", "api_key": PROVIDER_SECRET}])


def rows(served: Served) -> list[Any]:
    return list(served.client.ledger.records())


def test_the_anthropic_sdk_through_the_proxy_is_priced_with_the_operators_key_injected(served, fake):
    tenant = served.key(user="ann")
    sdk = anthropic.Anthropic(base_url=served.url + "/proxy", api_key=tenant, max_retries=0,
                              default_headers={"x-target-url": fake.url})
    fake.queue(Reply(usage=USAGE))
    raw = sdk.messages.with_raw_response.create(model="claude-3-5-haiku-20241022", max_tokens=100, messages=MSG)
    assert raw.parse().content[0].text
    sent = fake.requests[-1]
    assert sent.headers.get("x-api-key") == PROVIDER_SECRET  # the tenant's key never left the gateway
    assert tenant not in str(sent.headers)
    (row,) = rows(served)
    assert (row.provider, row.model, row.input_tokens, row.cache_read_tokens, row.output_tokens) == (
        "anthropic", "claude-3-5-haiku-20241022", 1000, 200, 50)
    fake.queue(Reply(usage=USAGE))
    direct = served.client.chat(model="anthropic/claude-3-5-haiku-20241022", messages=MSG)
    assert row.total_usd == direct.cost.total_usd > 0
    assert Decimal(raw.headers["x-unillm-cost"]) == row.total_usd and raw.headers["x-unillm-ledger-id"] == row.id
    assert row.tags["user"] == "ann"


def test_an_anthropic_stream_through_the_proxy_is_priced_when_it_ends(served, fake):
    sdk = anthropic.Anthropic(base_url=served.url + "/proxy", api_key=served.key(), max_retries=0,
                              default_headers={"x-target-url": fake.url})
    fake.queue(Reply(usage=USAGE, text="streamed through the passthrough"))
    with sdk.messages.stream(model="claude-3-5-haiku-20241022", max_tokens=100, messages=MSG) as s:
        text = "".join(s.text_stream)
    assert text == "streamed through the passthrough"
    (row,) = rows(served)
    assert row.output_tokens == 50 and row.stream and row.total_usd > 0


def test_the_openai_sdk_through_the_proxy(served, fake):
    sdk = openai.OpenAI(base_url=served.url + "/proxy", api_key=served.key(), max_retries=0,
                        default_headers={"x-target-url": fake.url + "/v1"})
    fake.queue(Reply(usage=USAGE))
    sdk.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert fake.requests[-1].headers["authorization"] == f"Bearer {PROVIDER_SECRET}"
    (row,) = rows(served)
    assert row.provider == "openai" and row.input_tokens == 1000 and row.cache_read_tokens == 200


def test_reported_headers_price_an_answer_that_carries_no_usage(fake, tmp_path):
    with FakeApi(reply={"result": "ok"}) as api:
        for s in _serve(fake, tmp_path, [{"name": "tool", "base_url": api.url}]):
            r = httpx.post(s.url + "/proxy/run", json={}, headers={
                "authorization": f"Bearer {s.admin}", "x-target-url": api.url, "x-model": "gpt-4o-mini",
                "x-input-tokens": "1000000", "x-output-tokens": "0"})
            assert r.status_code == 200 and r.json() == {"result": "ok"}
            (row,) = rows(s)
            assert row.usage_source == "reported" and row.total_usd == Decimal("0.15")
            assert Decimal(r.headers["x-unillm-cost"]) == Decimal("0.15")
            bare = httpx.post(s.url + "/proxy/run", json={}, headers={"authorization": f"Bearer {s.admin}",
                                                                       "x-target-url": api.url})
            assert bare.headers["x-unillm-cost"] == "unpriced"  # never a silent $0


def test_tag_headers_follow_the_tenancy_rules(fake, tmp_path):
    with FakeApi() as api:
        for s in _serve(fake, tmp_path, [{"name": "tool", "base_url": api.url}],
                        server={"allow_tags": ["service"]}):
            h = {"authorization": f"Bearer {s.key(user='bob')}", "x-target-url": api.url}
            assert httpx.get(s.url + "/proxy/a", headers={**h, "x-service-name": "search"}).status_code == 200
            refused = httpx.get(s.url + "/proxy/a", headers={**h, "x-user-id": "ann"})
            assert refused.status_code == 400 and refused.json()["error"]["param"] == "x-user-id"
            (row,) = rows(s)
            assert row.tags["service"] == "search" and row.tags["user"] == "bob"
            assert len(api.received) == 1


# ── nothing reaches an address the operator did not allow ───────────────────

@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


def test_a_target_outside_the_allow_list_is_refused_and_nothing_is_sent(served, listener):
    for target, path in [(listener.url, "v1/messages"), ("http://127.0.0.1:1", "x"),
                         (served.url.replace("127.0.0.1", "localhost"), "v1")]:
        r = httpx.post(served.url + "/proxy/" + path, json={}, headers={
            "authorization": f"Bearer {served.admin}", "x-target-url": target})
        assert r.status_code == 403 and r.json()["error"]["code"] == "target_not_allowed", r.text
    assert listener.hits == []


def test_a_path_cannot_climb_out_of_the_upstream(fake, tmp_path, listener):
    for s in _serve(fake, tmp_path, [{"name": "v1only", "base_url": fake.url + "/v1"}]):
        for path in ["../v1beta/models", "..%2Fv1beta", "%2e%2e/x", "a/../../b"]:
            r = httpx.get(f"{s.url}/proxy/{path}", headers={"authorization": f"Bearer {s.admin}",
                                                            "x-target-url": fake.url + "/v1"})
            assert r.status_code in (400, 403, 404), (path, r.status_code)
        assert all(not req.path.startswith("/v1beta") for req in fake.requests)


def test_a_redirect_to_another_host_is_not_followed(fake, tmp_path, listener):
    fake.queue(Reply(status=302, raw=b"moved", content_type="text/plain", headers={"location": listener.url + "stolen"}))
    for s in _serve(fake, tmp_path, [{"name": "openai", "base_url": fake.url + "/v1", "auth": "bearer",
                                      "api_key": PROVIDER_SECRET}]):
        r = httpx.post(s.url + "/proxy/chat/completions", json={"model": "gpt-4o-mini", "messages": MSG},
                       headers={"authorization": f"Bearer {s.admin}", "x-target-url": fake.url + "/v1"})
        assert r.status_code == 302
    assert listener.hits == []


def test_a_name_that_resolves_to_loopback_is_refused(fake, tmp_path, listener):
    name = socket.gethostname()
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(name, listener.port)}
    except OSError:
        pytest.skip("this machine's hostname does not resolve")
    if not any(a.startswith("127.") or a == "::1" for a in addresses):
        pytest.skip("this machine's hostname does not resolve to loopback")
    base = f"http://{name}:{listener.port}"
    for s in _serve(fake, tmp_path, [{"name": "sneaky", "base_url": base}]):
        r = httpx.get(s.url + "/proxy/x", headers={"authorization": f"Bearer {s.admin}", "x-target-url": base})
        assert r.status_code == 403 and "private or loopback" in r.json()["error"]["message"]
    assert listener.hits == []


def test_without_upstreams_the_proxy_is_off(fake, tmp_path):
    for s in _serve(fake, tmp_path, []):
        r = httpx.get(s.url + "/proxy/x", headers={"authorization": f"Bearer {s.admin}",
                                                   "x-target-url": fake.url})
        assert r.status_code == 404 and r.json()["error"]["code"] == "proxy_disabled"
        assert httpx.get(s.url + "/proxy/x", headers={"x-target-url": fake.url}).status_code == 401
