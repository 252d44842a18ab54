"""The admin API (issue 22): audit log, budgets and rules over HTTP, health."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.servers import any_store, pg_url, postgres_server, postgres_url  # noqa: F401
from tests.test_server_support import PROVIDER_SECRET, make_served, served, upstream  # noqa: F401
from unillm.testing import Reply

openai = pytest.importorskip("openai")
MSG = [{"role": "user", "content": "hi"}]
CHAT = {"model": "gpt-4o-mini", "messages": MSG}


def _h(served) -> dict[str, str]:
    return {"authorization": f"Bearer {served.admin}"}


def _audit(served, **params) -> list[dict]:
    r = httpx.get(served.url + "/admin/audit", headers=_h(served), params=params)
    assert r.status_code == 200, r.text
    return r.json()["data"]


# ── audit ────────────────────────────────────────────────────────────────────

def test_key_changes_are_audited_newest_first_without_secrets(served):
    r = httpx.post(served.url + "/admin/keys", headers=_h(served), json={"user": "bob", "budget_usd": "5"})
    assert r.status_code == 201
    made = r.json()
    assert httpx.delete(f"{served.url}/admin/keys/{made['id']}", headers=_h(served)).status_code == 200
    rows = _audit(served)
    admin_id = served.gateway.keys.verify(served.admin).id
    assert [(x["action"], x["object"], x["actor"]) for x in rows] == [
        ("keys.revoke", f"key:{made['id']}", admin_id), ("keys.create", f"key:{made['id']}", admin_id)]
    assert rows[1]["before"] is None and rows[1]["after"]["user"] == "bob"
    assert rows[0]["before"]["revoked_at"] is None and rows[0]["after"]["revoked_at"] is not None
    assert made["key"] not in json.dumps(rows)
    assert _audit(served, limit=1) == rows[:1]
    assert _audit(served, after=rows[1]["id"]) == rows[:1]
    assert _audit(served, before=rows[0]["id"]) == rows[1:]
    r = httpx.get(served.url + "/admin/audit", headers=_h(served), params={"limit": "x"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "limit"


def test_audit_needs_an_admin_key(served):
    plain = served.key(user="u")
    for path in ("/admin/audit", "/admin/budgets", "/admin/rules", "/admin/health"):
        r = httpx.get(served.url + path, headers={"authorization": f"Bearer {plain}"})
        assert r.status_code == 403 and r.json()["error"]["type"] == "permission_error"
        assert httpx.get(served.url + path).status_code == 401


def test_audit_rows_cannot_be_changed_or_deleted(any_store):
    from unillm.server import audit
    audit.record(any_store, "key_x", "test.do", "thing:1", {"api_key": "sk-secret"}, {"a": 1})
    (row,) = audit.rows(any_store)
    assert row.before == {"api_key": "***"} and row.after == {"a": 1}
    for sql in ("UPDATE unillm_audit SET actor = 'someone'", "DELETE FROM unillm_audit"):
        with pytest.raises(Exception, match="append-only"):
            with any_store.transaction() as tx:
                tx.execute(sql)
    assert [r.actor for r in audit.rows(any_store)] == ["key_x"]


def test_unillm_audit_tail_prints_the_changes(served, tmp_path):
    httpx.post(served.url + "/admin/budgets", headers=_h(served),
               json={"name": "team", "scope": {"project": "p"}, "limit_usd": "3"})
    out = subprocess.run([sys.executable, "-m", "unillm", "audit", "tail", "--ledger",
                          f"sqlite:///{tmp_path}/l.db", "--format", "json"],
                         capture_output=True, text=True, cwd=Path(__file__).parents[1], timeout=60)
    assert out.returncode == 0, out.stderr
    (line,) = [json.loads(x) for x in out.stdout.splitlines()]
    assert line["action"] == "budgets.create" and line["object"] == "budget:team"
    assert line["after"]["limit_usd"] == "3"


# ── budgets ──────────────────────────────────────────────────────────────────

def test_budget_created_over_http_refuses_the_next_call_and_reports_status(served, upstream):
    secret = served.key(user="bob", project="p")
    upstream.queue(Reply(text="ok", usage={"input_tokens": 3, "output_tokens": 1}))
    r = httpx.post(served.url + "/admin/budgets", headers=_h(served),
                   json={"name": "bob-cap", "scope": {"user": "bob"}, "limit_requests": 1, "period": "daily"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["source"] == "http" and body["spec"]["limit_requests"] == 1
    (st,) = body["status"]
    assert {"spent_usd", "held_usd", "resets_at"} <= set(st) and st["requests"] == 0
    assert served.openai(secret).chat.completions.create(**CHAT).choices[0].message.content == "ok"
    with pytest.raises(openai.RateLimitError, match="bob-cap"):
        served.openai(secret).chat.completions.create(**CHAT)
    assert len(upstream.requests) == 1
    (st,) = httpx.get(served.url + "/admin/budgets/bob-cap", headers=_h(served)).json()["status"]
    assert st["requests"] == 1
    r = httpx.patch(served.url + "/admin/budgets/bob-cap", headers=_h(served), json={"limit_requests": 5})
    assert r.status_code == 200 and r.json()["spec"]["limit_requests"] == 5
    upstream.queue(Reply(text="ok2", usage={"input_tokens": 3, "output_tokens": 1}))
    assert served.openai(secret).chat.completions.create(**CHAT).choices[0].message.content == "ok2"
    assert httpx.delete(served.url + "/admin/budgets/bob-cap", headers=_h(served)).status_code == 200
    assert httpx.get(served.url + "/admin/budgets/bob-cap", headers=_h(served)).status_code == 404
    assert [x["action"] for x in _audit(served)] == ["budgets.delete", "budgets.update", "budgets.create"]


# ── budgets and rules: the same create / change / delete ─────────────────────

KINDS = {  # kind: (a valid object, a valid patch, a patch the file would refuse)
    "budgets": ({"name": "x", "scope": {"user": "bob"}, "limit_usd": "1"}, {"limit_usd": "2"}, {"limit_usd": "-3"}),
    "rules": ({"name": "x", "when": {"model": "gpt-4o"}, "use": "gpt-4o-mini"}, {"use": "gpt-4.1-mini"},
              {"when": {"prompt_tokens_below": "abc"}}),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_create_change_delete_over_http(served, kind):
    made, patch, bad = KINDS[kind]
    url, h = f"{served.url}/admin/{kind}", _h(served)
    r = httpx.post(url, headers=h, json=made)
    assert r.status_code == 201, r.text
    assert r.json()["source"] == "http" and r.json()["name"] == "x"
    r = httpx.post(url, headers=h, json=made)
    assert r.status_code == 409 and r.json()["error"]["code"] == f"{kind[:-1]}_exists"
    r = httpx.patch(url + "/x", headers=h, json=bad)
    assert r.status_code == 400 and r.json()["error"]["code"] == f"invalid_{kind[:-1]}"
    assert httpx.patch(url + "/x", headers=h, json={"name": "y"}).json()["error"]["param"] == "name"
    r = httpx.patch(url + "/nope", headers=h, json=patch)
    assert r.status_code == 404 and r.json()["error"]["code"] == f"{kind[:-1]}_not_found"
    r = httpx.patch(url + "/x", headers=h, json=patch)
    assert r.status_code == 200, r.text
    (key, value), = patch.items()
    assert r.json()["spec"][key] == value
    (listed,) = httpx.get(url, headers=h).json()["data"]
    assert listed["name"] == "x" and listed["spec"][key] == value
    assert httpx.delete(url + "/x", headers=h).json() == {"name": "x", "deleted": True}
    assert httpx.delete(url + "/x", headers=h).status_code == 404
    assert httpx.get(url, headers=h).json()["data"] == []
    rows = _audit(served)
    assert [x["action"] for x in rows] == [f"{kind}.delete", f"{kind}.update", f"{kind}.create"]
    assert rows[1]["before"][key] != value and rows[1]["after"][key] == value


BAD = {  # kind: (a body the file's typed model refuses, the same object as unillm.toml, where the file's message starts)
    "budgets": ({"name": "b", "limit_usd": "-1"}, '[[budgets]]\nname = "b"\nlimit_usd = "-1"\n', "budgets[0]"),
    # (prompt_tokens_below merely looks like a secret's name: its value is echoed in both)
    "rules": ({"name": "r", "when": {"prompt_tokens_below": "abc"}, "use": "gpt-4o-mini"},
              '[[rules]]\nname = "r"\nwhen = { prompt_tokens_below = "abc" }\nuse = "gpt-4o-mini"\n', "rules[0]"),
}


@pytest.mark.parametrize("kind", list(BAD))
def test_a_bad_object_gets_the_files_message(served, tmp_path, kind):
    from unillm import errors
    from unillm.config import load_settings
    body, toml, mark = BAD[kind]
    r = httpx.post(f"{served.url}/admin/{kind}", headers=_h(served), json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == f"invalid_{kind[:-1]}"
    path = tmp_path / "unillm.toml"
    path.write_text(toml)
    with pytest.raises(errors.ConfigError) as exc:
        load_settings(path)
    tail = str(exc.value).split(mark, 1)[1]
    assert r.json()["error"]["message"].endswith(tail), (r.json()["error"]["message"], str(exc.value))
    assert _audit(served) == []


@pytest.mark.parametrize(("body", "says"), [({"name": "b", "limit": 1}, "limit"),
                                            ({"name": "r", "use": "no-such-model-xyz"}, "target")])
def test_unknown_fields_and_targets_are_refused(served, body, says):
    kind = "budgets" if "limit" in body else "rules"
    r = httpx.post(f"{served.url}/admin/{kind}", headers=_h(served), json=body)
    assert r.status_code == 400 and says in r.json()["error"]["message"]
    assert _audit(served) == []


FILE_DEFINED = [("budgets", {"name": "global", "limit_usd": "100"}, {"limit_usd": "1"}),
                ("rules", {"name": "global", "when": {"model": "gpt-4o"}, "use": "gpt-4o-mini"},
                 {"use": "gpt-4.1-mini"})]


@pytest.mark.parametrize(("kind", "defined", "patch"), FILE_DEFINED, ids=[k for k, _, _ in FILE_DEFINED])
def test_file_defined_objects_cannot_be_changed_over_http(upstream, tmp_path, kind, defined, patch):
    for s in make_served(upstream, tmp_path, **{kind: [defined]}):
        h = _h(s)
        listed = httpx.get(f"{s.url}/admin/{kind}", headers=h).json()["data"]
        assert [(b["name"], b["source"]) for b in listed] == [("global", "file")]
        for method, path, body in (("POST", f"/admin/{kind}", {**defined, **patch}),
                                   ("PATCH", f"/admin/{kind}/global", patch),
                                   ("DELETE", f"/admin/{kind}/global", None)):
            r = httpx.request(method, s.url + path, headers=h, json=body)
            assert r.status_code == 409 and r.json()["error"]["code"] == "defined_in_file", (method, r.text)
            assert "unillm.toml" in r.json()["error"]["message"]
        assert _audit(s) == []


def test_key_budgets_cannot_be_changed_over_http(upstream, tmp_path):
    for s in make_served(upstream, tmp_path, budgets=[{"name": "global", "limit_usd": "100"}]):
        h = _h(s)
        listed = httpx.get(s.url + "/admin/budgets", headers=h).json()["data"]
        assert listed[0]["status"][0]["remaining_usd"] == "100"
        r = httpx.post(s.url + "/admin/budgets", headers=h, json={"name": "key:key_1", "limit_usd": "1"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "key_budget"


def write_config(fake, tmp_path: Path) -> Path:
    table = fake.providers("openai")["openai"]
    lines = [f"ledger = {json.dumps(f'sqlite:///{tmp_path}/l.db')}", 'cache = "off"', "",
             "[providers.openai]", *(f"{k} = {json.dumps(v)}" for k, v in table.items()), "max_retries = 0"]
    path = tmp_path / "unillm.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_budget_created_over_http_holds_on_both_workers(tmp_path):
    from tests.servers import free_port, wait_ready, worker_connections
    from unillm.server.keys import KeyStore
    from unillm.server.run import AppFactory
    from unillm.testing import FakeProvider
    with FakeProvider() as fake:
        for _ in range(40):
            fake.queue(Reply(text="ok", usage={"input_tokens": 3, "output_tokens": 1}))
        config = write_config(fake, tmp_path)
        store = AppFactory(str(config)).client().ledger.store
        secret, _ = KeyStore(store).create(user="bob")
        admin, _ = KeyStore(store).create(admin=True)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        code = ("from unillm.server.run import AppFactory, serve; "
                f"serve(AppFactory({str(config)!r}), port={port}, workers=2, loop='asyncio', log_level='warning', "
                "timeout_keep_alive=120)")
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[1])
        try:
            wait_ready(base + "/health", proc)
            h = {"authorization": f"Bearer {admin}"}
            bob = {"authorization": f"Bearer {secret}"}
            one, two = worker_connections(base, h)
            pids = {c.get(base + "/admin/health", headers=h).json()["pid"] for c in (one, two)}
            for c in (one, two):  # each worker has admitted bob (and read the budgets) before
                assert c.post(base + "/v1/chat/completions", json=CHAT, headers=bob).status_code == 200
            r = one.post(base + "/admin/budgets", headers=h,
                         json={"name": "bob-cap", "scope": {"user": "bob"}, "limit_requests": 3})
            assert r.status_code == 201
            time.sleep(2.2)  # REFRESH_SECONDS: the other worker re-reads before its next admission
            codes = [c.post(base + "/v1/chat/completions", json=CHAT, headers=bob).status_code
                     for c in (two, one, two, one, two, one)]
            assert {c.get(base + "/admin/health", headers=h).json()["pid"] for c in (one, two)} == pids
            for c in (one, two):
                c.close()
        finally:
            proc.terminate()
            proc.wait(20)
    # the budget counts from its creation: 3 calls fit, then each worker refuses
    assert codes == [200, 200, 200, 429, 429, 429], codes


# ── rules ────────────────────────────────────────────────────────────────────

def test_rule_created_over_http_swaps_the_model_and_is_explained(served, upstream):
    secret = served.key(user="bob")
    rule = {"name": "to-mini", "when": {"model": "gpt-4o"}, "use": "gpt-4o-mini"}
    r = httpx.post(served.url + "/admin/rules", headers=_h(served), json=rule)
    assert r.status_code == 201, r.text
    upstream.queue(Reply(text="ok", usage={"input_tokens": 3, "output_tokens": 1}))
    resp = served.openai(secret).chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG)
    assert resp.headers["x-unillm-rule"] == "to-mini"
    assert upstream.requests[-1].json["model"] == "gpt-4o-mini"
    r = httpx.post(served.url + "/admin/rules/test", headers=_h(served), json={"model": "gpt-4o", "messages": MSG})
    assert r.status_code == 200, r.text
    text = json.dumps(r.json())
    assert "to-mini" in text and "gpt-4o-mini" in text
    (listed,) = httpx.get(served.url + "/admin/rules", headers=_h(served)).json()["data"]
    assert listed["name"] == "to-mini" and listed["source"] == "http"
    assert listed["metrics"]["applications"] == 1 and listed["metrics"]["saved_usd"] not in (None, "0")
    r = httpx.patch(served.url + "/admin/rules/to-mini", headers=_h(served), json={"when": {"model": "nothing*"}})
    assert r.status_code == 200, r.text
    upstream.queue(Reply(text="ok", usage={"input_tokens": 3, "output_tokens": 1}))
    served.openai(secret).chat.completions.create(model="gpt-4o", messages=MSG)
    assert upstream.requests[-1].json["model"] == "gpt-4o"
    assert httpx.delete(served.url + "/admin/rules/to-mini", headers=_h(served)).status_code == 200
    assert httpx.get(served.url + "/admin/rules", headers=_h(served)).json()["data"] == []
    assert [x["action"] for x in _audit(served)] == ["rules.delete", "rules.update", "rules.create"]


# ── health ───────────────────────────────────────────────────────────────────

def test_admin_health_reports_latency_memory_and_errors(served, upstream):
    secret = served.key(user="bob")
    upstream.queue(Reply(text="ok", usage={"input_tokens": 3, "output_tokens": 1}))
    served.openai(secret).chat.completions.create(**CHAT)
    r = httpx.get(served.url + "/admin/health", headers=_h(served))
    assert r.status_code == 200, r.text
    h = r.json()
    assert h["ledger"]["ok"] and h["ledger"]["latency_ms"] >= 0
    assert h["memory"]["rss_bytes"] > 1_000_000
    assert h["calls"]["count"] == 1 and h["calls"]["errors"] == 0 and h["calls"]["p50_ms"] is not None
    assert h["pool"]["threads"] >= 1 and h["pool"]["max_threads"] >= h["pool"]["threads"] and h["pool"]["queued"] == 0
    assert h["queue"] == {"active": 1, "queued": 0, "max_concurrent": h["queue"]["max_concurrent"],
                          "max_queued": h["queue"]["max_queued"]} and h["queue"]["max_concurrent"] > 1
    assert PROVIDER_SECRET not in r.text
    assert httpx.get(served.url + "/health").json()["status"] == "ok"


# ── hot reload ───────────────────────────────────────────────────────────────

RULE = '\n[[rules]]\nname = "file-rule"\nwhen = {{ model = "gpt-4o" }}\nuse = "{target}"\n'


def test_reload_refuses_a_broken_file_and_applies_a_fixed_one(upstream, tmp_path):
    from tests.test_server_support import serve_app
    from unillm import Client
    from unillm.server.app import create_app
    config = write_config(upstream, tmp_path)
    good = config.read_text()
    config.write_text(good + RULE.format(target="gpt-4o-mini"))
    client = Client(config)
    app = create_app(client)
    admin, _ = app.state.gateway.keys.create(admin=True)
    h = {"authorization": f"Bearer {admin}"}
    try:
        for url in serve_app(app):
            def names() -> list[tuple[str, str]]:
                return [(r["name"], r["spec"].get("use")) for r in
                        httpx.get(url + "/admin/rules", headers=h).json()["data"]]
            assert names() == [("file-rule", "gpt-4o-mini")]
            config.write_text(good + RULE.format(target="gpt-4o-mini") + "\n[[budgets]]\nname = 'b'\nlimit_usd = -1\n")
            r = httpx.post(url + "/admin/reload", headers=h)
            assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_config"
            from unillm import errors
            with pytest.raises(errors.ConfigError) as startup:
                Client(config)
            assert str(startup.value) in r.json()["error"]["message"]
            assert names() == [("file-rule", "gpt-4o-mini")]
            config.write_text(good + RULE.format(target="gpt-4.1-mini") + "\n[[budgets]]\nname = 'b'\nlimit_usd = 1\n")
            r = httpx.post(url + "/admin/reload", headers=h)
            assert r.status_code == 200, r.text
            assert names() == [("file-rule", "gpt-4.1-mini")]
            assert [b["name"] for b in httpx.get(url + "/admin/budgets", headers=h).json()["data"]] == ["b"]
            assert _audit_at(url, h)[0]["action"] == "config.reload"
    finally:
        client.close()


PRICES = '[openai."gpt-4o-mini"]\ninput = {input}\noutput = 1.00\n'


def test_reload_rereads_the_price_file_and_a_broken_one_keeps_the_running_prices(upstream, tmp_path):
    from tests.test_server_support import serve_app
    from unillm import Client
    from unillm.server.app import create_app
    config = write_config(upstream, tmp_path)
    prices = tmp_path / "prices.toml"
    prices.write_text(PRICES.format(input="2.00"))
    config.write_text('pricing = "prices.toml"\n' + config.read_text())
    client = Client(config)
    app = create_app(client)
    admin, _ = app.state.gateway.keys.create(admin=True)
    user, _ = app.state.gateway.keys.create(user="bob")
    h = {"authorization": f"Bearer {admin}"}

    def cost(url: str) -> Decimal:  # 1M uncached input tokens: the input price, exactly
        upstream.queue(Reply(text="ok", usage={"input_tokens": 1_000_000, "output_tokens": 0}))
        r = httpx.post(url + "/v1/chat/completions", headers={"authorization": f"Bearer {user}"},
                       json={"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
        assert r.status_code == 200, r.text
        return Decimal(r.headers["x-unillm-cost"])
    try:
        for url in serve_app(app):
            assert cost(url) == Decimal("2.00")
            prices.write_text(PRICES.format(input='"two"'))
            r = httpx.post(url + "/admin/reload", headers=h)
            assert r.status_code == 400 and "prices.toml" in r.json()["error"]["message"], r.text
            assert cost(url) == Decimal("2.00")
            prices.write_text(PRICES.format(input="3.00"))
            r = httpx.post(url + "/admin/reload", headers=h)
            assert r.status_code == 200, r.text
            assert cost(url) == Decimal("3.00")
    finally:
        client.close()


def _audit_at(url: str, h: dict[str, str]) -> list[dict]:
    return httpx.get(url + "/admin/audit", headers=h).json()["data"]


def test_sighup_reloads_every_worker_and_a_broken_file_keeps_serving(tmp_path):
    import signal

    from tests.servers import free_port, wait_ready, worker_connections
    from unillm.server.keys import KeyStore
    from unillm.server.run import AppFactory
    from unillm.testing import FakeProvider
    with FakeProvider() as fake:
        config = write_config(fake, tmp_path)
        good = config.read_text()
        config.write_text(good + RULE.format(target="gpt-4o-mini"))
        admin, _ = KeyStore(AppFactory(str(config)).client().ledger.store).create(admin=True)
        h = {"authorization": f"Bearer {admin}"}
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        code = ("from unillm.server.run import AppFactory, serve; "
                f"serve(AppFactory({str(config)!r}), port={port}, workers=2, loop='asyncio', log_level='warning', "
                "timeout_keep_alive=120)")
        proc = subprocess.Popen([sys.executable, "-c", code], cwd=Path(__file__).parents[1])
        conns: list[httpx.Client] = []
        try:
            wait_ready(base + "/health", proc)
            conns = worker_connections(base, h)
            pids = {c.get(base + "/admin/health", headers=h).json()["pid"] for c in conns}

            def targets() -> list[object]:
                return [[r["spec"].get("use") for r in c.get(base + "/admin/rules", headers=h).json()["data"]]
                        for c in conns]
            assert targets() == [["gpt-4o-mini"]] * 2
            config.write_text(good + RULE.format(target="no-such-model-xyz"))
            proc.send_signal(signal.SIGHUP)
            time.sleep(3)
            assert targets() == [["gpt-4o-mini"]] * 2  # same workers, old config
            assert {c.get(base + "/admin/health", headers=h).json()["pid"] for c in conns} == pids
            config.write_text(good + RULE.format(target="gpt-4.1-mini"))
            proc.send_signal(signal.SIGHUP)
            time.sleep(3)
            assert targets() == [["gpt-4.1-mini"]] * 2
        finally:
            for c in conns:
                c.close()
            proc.terminate()
            proc.wait(20)


def test_a_stored_object_this_version_refuses_is_left_out_not_fatal(served, upstream):
    with served.client.ledger.store.transaction() as tx:
        tx.execute("INSERT INTO unillm_admin_objects (kind, name, spec, updated_at) VALUES (?, ?, ?, ?)",
                   ("budget", "odd", json.dumps({"name": "odd", "limit_usd": "1", "future_key": 1}), "x"))
    upstream.queue(Reply(text="ok", usage={"input_tokens": 3, "output_tokens": 1}))
    assert served.openai(served.key(user="bob")).chat.completions.create(**CHAT).choices
    assert httpx.get(served.url + "/admin/budgets", headers=_h(served)).json()["data"] == []


def test_pool_use_reports_threads_and_postgres_connections(any_store):
    from unillm.server.health import _pool_use
    any_store.last_cursor()  # the first use opens the pool
    use = _pool_use(any_store)
    assert use["max_threads"] >= 1 and use["queued"] == 0
    assert ("connections" in use) == (type(any_store).__name__ == "PostgresStore")
    if "connections" in use:
        assert 1 <= use["connections"] <= use["max_connections"] and use["waiting"] == 0
