"""Keys and tenancy: no request without a valid key gets through; budgets and RPM/TPM limits hold."""

from __future__ import annotations

import sqlite3

import httpx
import pytest

from tests.test_server_support import make_served, served, upstream  # noqa: F401
from unillm.server.ratelimit import RateLimiter
from unillm.testing import Reply

openai = pytest.importorskip("openai")
MSG = [{"role": "user", "content": "hi"}]
CHAT = {"model": "gpt-4o-mini", "messages": MSG}


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/chat/completions"), ("GET", "/v1/models"), ("POST", "/v1/usage"),
    ("POST", "/v1/usage/batch"), ("GET", "/v1/analytics"), ("GET", "/v1/budgets"),
    ("GET", "/admin/keys"), ("POST", "/admin/keys"), ("DELETE", "/admin/keys/key_x"), ("GET", "/dashboard"),
])
@pytest.mark.parametrize("auth", [None, "Bearer ulk_not-a-real-key", "Basic abc", "Bearer x"])
def test_nothing_gets_through_without_a_valid_key(served, upstream, method, path, auth):
    headers = {"authorization": auth} if auth else {}
    r = httpx.request(method, served.url + path, headers=headers, json=CHAT)
    assert r.status_code == 401
    assert r.json()["error"]["code"] in ("missing_api_key", "invalid_api_key")
    assert upstream.requests == []


def test_sdk_with_bad_key_gets_authentication_error(served, upstream):
    with pytest.raises(openai.AuthenticationError):
        served.openai("ulk_" + "A" * 43).chat.completions.create(**CHAT)
    assert upstream.requests == []


def test_revoked_key_stops_working_at_once(served):
    secret = served.key(user="bob", project="p")
    assert served.openai(secret).chat.completions.create(**CHAT).choices
    key_id = served.gateway.keys.verify(secret).id
    r = httpx.delete(f"{served.url}/admin/keys/{key_id}", headers={"authorization": f"Bearer {served.admin}"})
    assert r.status_code == 200
    with pytest.raises(openai.AuthenticationError):
        served.openai(secret).chat.completions.create(**CHAT)
    r = httpx.delete(f"{served.url}/admin/keys/{key_id}", headers={"authorization": f"Bearer {served.admin}"})
    assert r.status_code == 404


def test_admin_endpoints_need_an_admin_key(served):
    plain = served.key(user="u", project="p")
    for method, path in (("GET", "/admin/keys"), ("POST", "/admin/keys"), ("GET", "/dashboard")):
        r = httpx.request(method, served.url + path, headers={"authorization": f"Bearer {plain}"}, json={})
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"


def test_admin_manages_keys_over_http_and_only_hashes_are_stored(served):
    h = {"authorization": f"Bearer {served.admin}"}
    r = httpx.post(served.url + "/admin/keys", headers=h,
                   json={"user": "carol", "project": "search", "rpm": 100, "budget_usd": "12.50"})
    assert r.status_code == 201
    created = r.json()
    secret = created["key"]
    assert secret.startswith("ulk_") and len(secret) >= 40 and created["budget_usd"] == "12.50"
    listed = httpx.get(served.url + "/admin/keys", headers=h).json()["data"]
    assert any(k["id"] == created["id"] and k["user"] == "carol" for k in listed)
    assert all("key" not in k and "hash" not in k for k in listed)
    resp = served.openai(secret).chat.completions.create(**CHAT)
    rec = list(served.client.ledger.records())[-1]
    assert resp.choices and rec.tags == {**rec.tags, "user": "carol", "project": "search", "key_id": created["id"]}
    conn = sqlite3.connect(served.client.ledger.store.path)
    rows = conn.execute("SELECT * FROM unillm_keys").fetchall()
    conn.close()
    assert not any(secret in str(v) for row in rows for v in row)
    bad = httpx.post(served.url + "/admin/keys", headers=h, json={"user": "x", "rpm": 0})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "rpm"
    bad = httpx.post(served.url + "/admin/keys", headers=h, json={"usr": "x"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "usr"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_rpm_limit_returns_429_with_retry_after(upstream, tmp_path):
    clock = Clock()
    for s in make_served(upstream, tmp_path, limiter=RateLimiter(clock=clock)):
        secret = s.key(user="u", project="p", rpm=2)
        other = s.key(user="v", project="p", rpm=2)
        client = s.openai(secret)
        client.chat.completions.create(**CHAT)
        clock.now += 10
        client.chat.completions.create(**CHAT)
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(**CHAT)
        assert info.value.response.headers["retry-after"] == "50"  # the first request leaves the window
        assert info.value.code == "rate_limit_exceeded"
        assert s.openai(other).chat.completions.create(**CHAT).choices  # limits are per key
        clock.now += 50.5
        assert client.chat.completions.create(**CHAT).choices


def test_tpm_limit_counts_real_usage(upstream, tmp_path):
    clock = Clock()
    for s in make_served(upstream, tmp_path, limiter=RateLimiter(clock=clock)):
        client = s.openai(s.key(user="u", project="p", tpm=1000))
        upstream.queue(Reply(usage={"input_tokens": 900, "output_tokens": 150}))
        client.chat.completions.create(**CHAT)
        with pytest.raises(openai.RateLimitError) as info:
            client.chat.completions.create(**CHAT)
        assert "tokens per minute" in info.value.message
        assert info.value.response.headers["retry-after"] == "60"
        clock.now += 61
        assert client.chat.completions.create(**CHAT).choices


def test_key_budget_refuses_with_429_and_retry_after(served, upstream):
    secret = served.key(user="u", project="p", budget_usd="0.0001", period="monthly")
    client = served.openai(secret)
    statuses = []
    for _ in range(4):
        upstream.queue(Reply(usage={"input_tokens": 200, "output_tokens": 50}))  # $0.00006 on gpt-4o-mini
        try:
            client.chat.completions.create(**CHAT, max_tokens=50)
            statuses.append(200)
        except openai.RateLimitError as exc:
            statuses.append(429)
            assert exc.code == "budget_exceeded" and exc.type == "insufficient_quota"
            assert int(exc.response.headers["retry-after"]) > 0
            break
    assert statuses == [200, 200, 429]  # $0.00006 spent leaves room for a small call; $0.00012 does not
    assert served.openai().chat.completions.create(**CHAT).choices  # other keys are unaffected
    budgets = httpx.get(served.url + "/v1/budgets", headers={"authorization": f"Bearer {secret}"}).json()["data"]
    assert len(budgets) == 1 and budgets[0]["scope"]["key_id"].startswith("key_")
    assert budgets[0]["limit_usd"] == "0.0001"
