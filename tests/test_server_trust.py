"""A hostile tenant against `unillm serve` (issue 13): the real OpenAI SDK (or raw httpx where a
client cannot say it) against the gateway, FakeProvider upstream, and a separate loopback
listener proving that nothing reaches an address the operator did not configure."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import httpx
import pytest

from tests.test_server_support import Served, make_served, serve_app, served, upstream  # noqa: F401
from unillm import Client
from unillm.server.app import create_app
from unillm.server.wire import header_value

openai = pytest.importorskip("openai")

MSG = [{"role": "user", "content": "What is 2+2?"}]


class Listener:
    """A loopback TCP listener that records every connection (and its first bytes)."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind(("127.0.0.1", port))
        except OSError:
            self.sock.close()
            pytest.skip(f"port {port} is in use: cannot prove nothing connects to it")
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        self.hits: list[bytes] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(2)
                try:
                    self.hits.append(conn.recv(65536))
                    conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\n"
                                 b"connection: close\r\n\r\n")
                except OSError:
                    self.hits.append(b"")

    def close(self) -> None:
        self.sock.close()
        self._thread.join(5)


@pytest.fixture
def listener() -> Iterator[Listener]:
    lst = Listener()
    yield lst
    lst.close()


@contextmanager
def gateway(fake: Any, tmp_path: Path, *, only: tuple[str, ...] = (), **settings: Any) -> Iterator[Served]:
    """A gateway whose operator configured only the providers in ``only`` (all when empty)."""
    providers = {n: {**t, "max_retries": 0} for n, t in fake.providers(*only).items()}
    client = Client(providers=providers, ledger=f"sqlite:///{tmp_path}/l.db", **settings)
    app = create_app(client)
    admin, _ = app.state.gateway.keys.create(user="root", project="ops", admin=True)
    try:
        for url in serve_app(app):
            yield Served(url, app, client, admin)
    finally:
        client.close()


def post(served: Served, body: dict[str, Any], key: str | None = None, **kw: Any) -> httpx.Response:
    return httpx.post(served.url + "/v1/chat/completions", json=body, timeout=30,
                      headers={"authorization": f"Bearer {key or served.admin}"}, **kw)


# ── finding 1: `extra` is refused unless the operator allow-lists its keys ───────

HOSTILE_EXTRA = [
    ("gemini-2.5-flash", "http_options", lambda url: {"base_url": url}),
    ("gpt-4o-mini", "model", lambda url: "o1"),
    ("gpt-4o-mini", "extra_headers", lambda url: {"Authorization": "Bearer stolen", "OpenAI-Project": "p"}),
    ("claude-sonnet-4-5", "extra_query", lambda url: {"x": "1"}),
    ("gpt-4o-mini", "base_url", lambda url: url),
]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("model", "name", "value"), HOSTILE_EXTRA)
def test_extra_is_refused_and_nothing_reaches_the_callers_address(served, upstream, listener, model,
                                                                  name, value, stream):
    before = len(upstream.requests)
    sdk = served.openai(served.key(user="mallory"))
    with pytest.raises(openai.BadRequestError) as info:
        out = sdk.chat.completions.create(model=model, messages=MSG, stream=stream,
                                          extra_body={"extra": {name: value(listener.url)}})
        list(out) if stream else None
    assert info.value.body["param"] == f"extra.{name}" and info.value.code == "extra_not_allowed"
    assert "extra" in info.value.message and name in info.value.message
    assert listener.hits == [] and len(upstream.requests) == before  # nothing was sent anywhere
    assert not list(served.client.ledger.records())  # and nothing was billed


def test_allow_listed_extra_keys_pass_and_others_are_still_refused(upstream, tmp_path, listener):
    for s in make_served(upstream, tmp_path, server={"allow_extra": ["verbosity"]}):
        resp = s.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG,
                                                  extra_body={"extra": {"verbosity": "low"}})
        assert resp.choices[0].message.content
        assert upstream.requests[-1].json["verbosity"] == "low"  # reached the vendor as a body field
        r = post(s, {"model": "gpt-4o-mini", "messages": MSG, "stream": True,
                     "extra": {"verbosity": "low", "http_options": {"base_url": listener.url}}})
        assert r.status_code == 400 and r.json()["error"]["param"] == "extra.http_options"
        assert "verbosity" in r.json()["error"]["message"]  # says what the operator allows
        r = post(s, {"model": "gpt-4o-mini", "messages": MSG, "extra": "http://evil"})
        assert r.status_code == 400 and r.json()["error"]["param"] == "extra"
    assert listener.hits == []


# ── finding 2: only providers the operator configured are reachable ──────────────

@pytest.mark.parametrize(("model", "port"), [("vllm/anything", 8000), ("ollama/llama3", 11434)])
def test_unconfigured_profiles_are_not_found_whether_or_not_the_port_listens(upstream, tmp_path, model, port):
    with gateway(upstream, tmp_path, only=("openai", "anthropic")) as s:
        lst = Listener(port)  # the profile's own default address
        try:
            with pytest.raises(openai.NotFoundError) as listening:
                s.openai().chat.completions.create(model=model, messages=MSG)
            r = post(s, {"model": model, "messages": MSG, "stream": True})
        finally:
            lst.close()
        assert lst.hits == []  # no connection was made
        closed = post(s, {"model": model, "messages": MSG})  # nothing listens now
        assert listening.value.code == "model_not_found"
        assert r.status_code == closed.status_code == 404
        assert r.json() == closed.json() and listening.value.body == closed.json()["error"]  # same words
        assert not list(s.client.ledger.records())


def test_models_lists_only_reachable_providers(upstream, tmp_path, monkeypatch):
    monkeypatch.setenv("MISTRAL_API_KEY", "mk-test")  # an API key present configures its vendor
    with gateway(upstream, tmp_path, only=("openai",),
                 aliases={"fast": "openai/gpt-4o-mini", "local": "ollama/llama3"}) as s:
        ids = {m.id for m in s.openai().models.list().data}
        providers = {i.split("/")[0] for i in ids if "/" in i}
        assert "openai/gpt-4o-mini" in ids and "fast" in ids
        assert providers == {"openai", "mistral"}
        assert "local" not in ids  # an alias to an unconfigured provider is not served either
        assert post(s, {"model": "local", "messages": MSG}).json()["error"]["code"] == "model_not_found"
        assert post(s, {"model": "fast", "messages": MSG}).status_code == 200


# ── finding 3: tenancy is the key's; callers add only allowed, unreserved tags ─────

def test_a_key_without_user_cannot_charge_a_user_budget_or_appear_as_that_user(upstream, tmp_path):
    budgets = [{"name": "ann", "scope": {"user": "ann"}, "period": "monthly", "limit_usd": "0.000001"},
               {"name": "red team", "scope": {"team": "red"}, "period": "monthly", "limit_usd": "0.000001"}]
    for s in make_served(upstream, tmp_path, budgets=budgets, tags={"service": "gw"},
                         server={"allow_tags": ["team", "feature"]}):
        sdk = s.openai(s.key())  # no user, no project
        for tags, name in [({"user": "ann"}, "user"), ({"project": "bot", "feature": "x"}, "project"),
                           ({"key_id": "key_other"}, "key_id"),
                           ({"team": "red"}, "team"),          # allowed, but a budget scopes on it
                           ({"service": "other"}, "service"),  # the operator's default tag
                           ({"colour": "blue"}, "colour")]:    # never allowed
            with pytest.raises(openai.BadRequestError) as info:
                sdk.chat.completions.create(model="gpt-4o-mini", messages=MSG, metadata=tags)
            assert info.value.body["param"] == f"metadata.{name}" and name in info.value.message
            assert info.value.code == "tag_not_allowed"
        resp = sdk.chat.completions.create(model="gpt-4o-mini", messages=MSG, metadata={"feature": "faq"})
        assert resp.choices[0].message.content
        (rec,) = list(s.client.ledger.records())
        assert rec.tags["feature"] == "faq" and "user" not in rec.tags and rec.tags["service"] == "gw"
        status = {b["budget"]: Decimal(b["spent_usd"]) for b in s.client.budgets.status()}
        assert status["ann"] == status["red team"] == 0  # nothing was charged to them
        analytics = httpx.get(s.url + "/v1/analytics", headers={"authorization": f"Bearer {s.admin}"}).json()
        assert [u["user"] for u in analytics["by_user"]] == [None]  # never shown under ann


def test_reserved_tags_cannot_be_allow_listed():
    from unillm.errors import ConfigError
    with pytest.raises(ConfigError) as info:
        Client(ledger="off", server={"allow_tags": ["feature", "project"]})
    assert "server.allow_tags" in str(info.value) and "'project'" in str(info.value)


# ── finding 6: any rule or model name is a safe header ─────────────────────────────

def test_header_values_are_percent_encoded_utf8():
    assert header_value("short prompts go to mini") == "short prompts go to mini"
    assert header_value("nano → mini") == "nano %E2%86%92 mini"
    assert header_value("a\r\nx-evil: 1") == "a%0D%0Ax-evil: 1"
    assert header_value("100% mini") == "100%25 mini"
    for text in ("nano → mini", "a\r\nx-evil: 1", "100% mini", "日本語\x00\x7f"):
        assert unquote(header_value(text)) == text
        header_value(text).encode("ascii")


@pytest.mark.parametrize("name", ["nano → mini", "cut\r\nx-injected: yes", "émoji 🚀 %41"])
def test_unicode_and_crlf_rule_names_never_500(upstream, tmp_path, name):
    rules = [{"name": name, "when": {"model": "gpt-4o"}, "use": "gpt-4o-mini"}]
    for s in make_served(upstream, tmp_path, rules=rules):
        raw = s.openai().chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG)
        assert raw.http_response.status_code == 200 and raw.parse().choices[0].message.content
        assert unquote(raw.headers["x-unillm-rule"]) == name
        assert "x-injected" not in raw.headers
        assert raw.headers["x-unillm-model"] == "openai/gpt-4o-mini"
        chunks = list(s.openai().chat.completions.create(model="gpt-4o", messages=MSG, stream=True,
                                                         stream_options={"include_usage": True}))
        assert chunks[-1].model_extra["unillm"]["rule"] == name
        assert [r.rule for r in s.client.ledger.records()] == [name, name]


# ── finding 9: dashboard sessions, framing, CORS ────────────────────────────────

def _login(s: Served, key: str, **headers: str) -> httpx.Response:
    return httpx.get(f"{s.url}/dashboard?key={key}&since=7d", headers=headers)


def test_dashboard_session_is_a_random_id_never_the_key(served):
    r = _login(served, served.admin)
    assert r.status_code == 303 and r.headers["location"] == "/dashboard?since=7d"
    cookie = r.headers["set-cookie"]
    attrs = {a.strip().split("=")[0].lower(): a for a in cookie.split(";")}
    assert {"httponly", "path", "samesite", "max-age"} <= set(attrs) and "secure" not in attrs
    assert attrs["samesite"].strip().lower() == "samesite=strict" and attrs["path"].strip() == "Path=/dashboard"
    sid = r.cookies["unillm_session"]
    assert len(sid) >= 40 and served.admin not in cookie and sid not in served.admin
    assert sid != _login(served, served.admin).cookies["unillm_session"]  # a fresh id per login
    page = httpx.get(served.url + "/dashboard", cookies={"unillm_session": sid})
    assert page.status_code == 200 and "<svg" in page.text or "unillm" in page.text
    for name, value in [("unillm_key", served.admin), ("unillm_session", served.admin),
                        ("unillm_session", sid[:-2] + "xx")]:
        assert httpx.get(served.url + "/dashboard", cookies={name: value}).status_code == 401
    # logging out ends the session on the server, not just in the browser
    out = httpx.get(served.url + "/dashboard?logout=1", cookies={"unillm_session": sid})
    assert out.status_code == 303 and 'unillm_session=""' in out.headers["set-cookie"]
    assert httpx.get(served.url + "/dashboard", cookies={"unillm_session": sid}).status_code == 401


def test_dashboard_session_ends_when_its_key_is_revoked_and_needs_admin(served):
    secret, key = served.gateway.keys.create(user="ops2", admin=True)
    sid = _login(served, secret).cookies["unillm_session"]
    assert httpx.get(served.url + "/dashboard", cookies={"unillm_session": sid}).status_code == 200
    served.gateway.keys.revoke(key.id)
    assert httpx.get(served.url + "/dashboard", cookies={"unillm_session": sid}).status_code == 401
    plain = _login(served, served.key(user="bob"))
    assert plain.status_code == 403 and "set-cookie" not in plain.headers


def test_dashboard_cookie_is_secure_behind_https(served):
    # uvicorn trusts X-Forwarded-Proto from its forwarded_allow_ips (default: 127.0.0.1 only)
    r = _login(served, served.admin, **{"x-forwarded-proto": "https"})
    assert r.status_code == 303 and "secure" in r.headers["set-cookie"].lower()


def test_dashboard_cannot_be_framed(served):
    sid = _login(served, served.admin).cookies["unillm_session"]
    page = httpx.get(served.url + "/dashboard", cookies={"unillm_session": sid})
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"


def _preflight(s: Served, origin: str) -> httpx.Response:
    return httpx.options(s.url + "/v1/chat/completions", headers={
        "origin": origin, "access-control-request-method": "POST",
        "access-control-request-headers": "authorization,content-type"})


def test_cors_is_off_by_default_and_an_allow_list_when_configured(served, upstream, tmp_path):
    assert "access-control-allow-origin" not in _preflight(served, "https://evil.example").headers
    got = httpx.get(served.url + "/v1/models", headers={"origin": "https://evil.example",
                                                       "authorization": f"Bearer {served.admin}"})
    assert got.status_code == 200 and "access-control-allow-origin" not in got.headers
    for s in make_served(upstream, tmp_path / "cors", server={"cors_origins": ["https://app.example"]}):
        ok = _preflight(s, "https://app.example")
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == "https://app.example"
        assert "access-control-allow-credentials" not in ok.headers
        assert "access-control-allow-origin" not in _preflight(s, "https://evil.example").headers
        r = httpx.post(s.url + "/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MSG},
                       headers={"origin": "https://app.example", "authorization": f"Bearer {s.admin}"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        assert "x-unillm-cost" in r.headers["access-control-expose-headers"]


# ── drop_params per request, the operator's setting the default ────────────────────

def test_drop_params_per_request_with_the_operators_default(upstream, tmp_path):
    body = {"model": "claude-sonnet-4-5", "messages": MSG, "seed": 7}
    for s in make_served(upstream, tmp_path):  # the default, "warn": dropped (and warned once)
        assert post(s, body).status_code == 200 and "seed" not in upstream.requests[-1].json
        r = post(s, {**body, "drop_params": False})
        assert r.status_code == 400 and r.json()["error"]["param"] == "seed"
        assert post(s, {**body, "drop_params": "yes"}).json()["error"]["param"] == "drop_params"
    for s in make_served(upstream, tmp_path / "strict", drop_params=False):
        r = post(s, body)  # the operator's setting is the default
        assert r.status_code == 400 and r.json()["error"]["param"] == "seed"
        resp = s.openai().chat.completions.create(model="claude-sonnet-4-5", messages=MSG, seed=7,
                                                  extra_body={"drop_params": True})
        assert resp.choices[0].message.content and "seed" not in upstream.requests[-1].json


def test_unpriced_model_of_a_configured_provider_is_still_its_own_404(served):
    r = post(served, {"model": "gpt-9-ultra", "messages": MSG})
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_priced"


def test_sessions_expire_on_the_injected_clock_and_are_bounded():
    from unillm.server.sessions import Sessions
    now = [0.0]
    sessions = Sessions(60, limit=3, monotonic=lambda: now[0])
    first = sessions.start("key_a")
    assert sessions.key_id(first) == "key_a" and sessions.key_id("guess") is None
    now[0] = 59.9
    assert sessions.key_id(first) == "key_a"
    now[0] = 60.0
    assert sessions.key_id(first) is None  # expired, and forgotten
    ids = [sessions.start(f"key_{i}") for i in range(4)]  # one more than the limit
    assert sessions.key_id(ids[0]) is None and [sessions.key_id(i) for i in ids[1:]] == ["key_1", "key_2", "key_3"]
