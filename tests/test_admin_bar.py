"""Issue 22's bar against ``unillm serve --workers 2`` (the real CLI, the real openai SDK and
raw httpx): a rule created over HTTP swaps the model on the next call on both workers and
``/admin/rules/test`` explains it; a price override changes the next call's cost on both; a
sealed key is used for every call and is in no response, log, export or database dump; every
change is in the audit log. (Budgets and SIGHUP on two workers: tests/test_admin_api.py.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from tests.servers import free_port, wait_ready, worker_connections
from unillm.cli import cli
from unillm.testing import FakeProvider, Reply

openai = pytest.importorskip("openai")
pytest.importorskip("cryptography")
from cryptography.fernet import Fernet

SEALED = "sk-sealed-BAR-never-in-clear-5150"
MSG = [{"role": "user", "content": "hi"}]
ROOT = Path(__file__).parents[1]


def _config(fake: FakeProvider, tmp: Path) -> Path:
    table = {k: v for k, v in fake.providers("openai")["openai"].items() if k != "api_key"}
    lines = [f"ledger = {json.dumps(f'sqlite:///{tmp}/l.db')}", 'cache = "off"', "", "[providers.openai]",
             *(f"{k} = {json.dumps(v)}" for k, v in table.items()), "max_retries = 0",
             'api_key_env = "UNILLM_BAR_NO_SUCH_VAR"']
    path = tmp / "unillm.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_the_bar_on_two_workers(tmp_path, monkeypatch):
    master = Fernet.generate_key().decode()
    monkeypatch.setenv("UNILLM_MASTER_KEY", master)
    monkeypatch.setenv("SEALED_SRC", SEALED)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    seen: list[str] = []  # every answer and page the gateway gave
    with FakeProvider() as fake:
        for _ in range(20):
            fake.queue(Reply(text="ok", usage={"input_tokens": 11, "output_tokens": 7}))
        config = _config(fake, tmp_path)
        run = CliRunner()
        r = run.invoke(cli, ["secrets", "set", "openai", "--from-env", "SEALED_SRC", "--config", str(config)])
        assert r.exit_code == 0, r.output
        r = run.invoke(cli, ["keys", "create", "--admin", "--format", "json", "--config", str(config)])
        assert r.exit_code == 0, r.output
        admin = json.loads(r.output)["key"]
        h = {"authorization": f"Bearer {admin}"}
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = (tmp_path / "serve.log").open("w")
        env = {k: v for k, v in os.environ.items() if k != "SEALED_SRC"}
        proc = subprocess.Popen([sys.executable, "-m", "unillm", "serve", "--config", str(config), "--port",
                                 str(port), "--workers", "2", "--access-log", "--log-level", "debug"],
                                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        conns: list[httpx.Client] = []
        try:
            wait_ready(base + "/health", proc)
            conns = worker_connections(base, h)
            sdks = [openai.OpenAI(base_url=base + "/v1", api_key=admin, http_client=c, max_retries=0) for c in conns]
            for sdk in sdks:  # each worker has served (and read rules and prices) before the changes
                sdk.chat.completions.create(model="gpt-4o", messages=MSG)
                assert fake.requests[-1].json["model"] == "gpt-4o"
            # a rule over HTTP swaps the model on the next call, on both workers
            rule = {"name": "to-mini", "when": {"model": "gpt-4o"}, "use": "gpt-4o-mini"}
            assert conns[0].post(base + "/admin/rules", headers=h, json=rule).status_code == 201
            time.sleep(2.3)  # admin.REFRESH_SECONDS
            for sdk in sdks:
                raw = sdk.chat.completions.with_raw_response.create(model="gpt-4o", messages=MSG)
                assert raw.headers["x-unillm-rule"] == "to-mini"
                assert fake.requests[-1].json["model"] == "gpt-4o-mini"
                seen.append(raw.text)
            t = conns[1].post(base + "/admin/rules/test", headers=h, json={"model": "gpt-4o", "messages": MSG})
            assert t.status_code == 200, t.text
            explained = t.json()
            assert explained["decision"]["rule"] == "to-mini" and explained["changes"]["model"] == "gpt-4o-mini"
            assert explained["estimate"]["result"]["model"] == "openai/gpt-4o-mini"
            assert Decimal(explained["estimate"]["saving_usd"]) > 0
            seen.append(t.text)
            # a price override changes the next call's cost, on both workers
            r2 = conns[1].put(base + "/admin/prices/openai/gpt-4o-mini", headers=h,
                              json={"input": "100", "output": "200"})
            assert r2.status_code == 200, r2.text
            time.sleep(5.3)  # price_overrides.REFRESH_SECONDS
            for sdk in sdks:
                raw = sdk.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
                u = raw.parse().usage
                assert Decimal(raw.headers["x-unillm-cost"]) == (
                    Decimal(100) * u.prompt_tokens + Decimal(200) * u.completion_tokens) / 1_000_000
                seen.append(raw.text + json.dumps(dict(raw.headers)))
            for c in conns:
                for path in ("/admin/audit", "/admin/health", "/admin/budgets", "/admin/rules", "/v1/models",
                             "/v1/analytics", "/admin/prices/openai/gpt-4o-mini"):
                    seen.append(c.get(base + path, headers=h).text)
                seen.append(c.post(base + "/admin/provider-keys/openai/test", headers=h).text)
                seen.append(c.get(base + f"/dashboard/rules?key={admin}", follow_redirects=True).text)
            audit = conns[0].get(base + "/admin/audit", headers=h).json()["data"]
        finally:
            for c in conns:
                c.close()
            proc.terminate()
            proc.wait(30)
            log.close()
        # the sealed key was used for every upstream call
        assert fake.requests and {q.headers["authorization"] for q in fake.requests} == {f"Bearer {SEALED}"}
    # ... and is nowhere in clear: answers, the log, an export, a database dump
    out = tmp_path / "export.jsonl"
    r = CliRunner().invoke(cli, ["ledger", "export", "--format", "jsonl", "-o", str(out), "--config", str(config)])
    assert r.exit_code == 0, r.output
    dump = subprocess.run(["sqlite3", str(tmp_path / "l.db"), ".dump"], capture_output=True, text=True,
                          check=True).stdout
    served_log = (tmp_path / "serve.log").read_text()
    assert "POST /v1/chat/completions" in served_log  # the log is the gateway's, with the calls in it
    assert "unillm_provider_keys" in dump and out.read_text().strip()
    for where, text in [("answers", "\n".join(seen)), ("log", served_log), ("export", out.read_text()),
                        ("dump", dump)]:
        assert SEALED not in text, where
    # every change is in the audit log: who, what, when
    got = {(row["action"], row["actor"]) for row in audit}
    assert ("provider_keys.set", "cli") in got and ("keys.create", "cli") in got
    assert {a for a, _ in got} >= {"rules.create", "prices.put"}
    assert all(row["at"] and row["object"] for row in audit)
