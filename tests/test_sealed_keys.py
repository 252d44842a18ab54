"""Sealed provider keys: Fernet-encrypted in the ledger, used when the config has none."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("cryptography")

from click.testing import CliRunner
from cryptography.fernet import Fernet

from unillm import Client, errors
from unillm.cli import cli
from unillm.ledger import open_store
from unillm.sealed import SealedKeys
from unillm.testing import FakeProvider, Reply


SEALED = "sk-sealed-SECRET-never-in-clear-77"
MASTER = Fernet.generate_key().decode()


def keyless(fake: FakeProvider) -> dict[str, dict[str, Any]]:
    """Every provider pointed at ``fake`` without an api_key: only a sealed key can serve."""
    return {n: {k: v for k, v in t.items() if k != "api_key"} | {"max_retries": 0, "api_key_env": None}
            for n, t in fake.providers().items()}


@pytest.fixture
def master(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("UNILLM_MASTER_KEY", MASTER)
    return MASTER


def test_stored_encrypted_and_dump_has_no_key(tmp_path: Path, master: str) -> None:
    db = tmp_path / "l.db"
    store = open_store(f"sqlite:///{db}")
    sealed = SealedKeys(store, master)
    sealed.set("openai", SEALED)
    assert sealed.list()[0]["provider"] == "openai" and SEALED not in str(sealed.list())
    assert sealed.get("openai") == SEALED
    store.close()
    dump = subprocess.run(["sqlite3", str(db), ".dump"], capture_output=True, text=True, check=True).stdout
    assert "unillm_provider_keys" in dump
    assert SEALED not in dump and "never-in-clear" not in dump


def test_no_master_key_or_wrong_one_is_a_config_error(tmp_path: Path, master: str,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    store = open_store(f"sqlite:///{tmp_path}/l.db")
    SealedKeys(store, master).set("openai", SEALED)
    token = SealedKeys(store, master)._rows("SELECT token FROM unillm_provider_keys")[0][0]
    with pytest.raises(errors.ConfigError, match="need a master key: set UNILLM_MASTER_KEY"):
        SealedKeys(store, None).get("openai")
    with pytest.raises(errors.ConfigError, match="does not open the sealed key of 'openai'") as info:
        SealedKeys(store, Fernet.generate_key().decode()).get("openai")
    assert token not in str(info.value) and SEALED not in str(info.value)
    with pytest.raises(errors.ConfigError, match="not a Fernet key"):
        SealedKeys(store, "hunter2").get("openai")
    store.close()


def test_client_uses_the_sealed_key_and_config_wins(tmp_path: Path, master: str) -> None:
    url = f"sqlite:///{tmp_path}/l.db"
    with FakeProvider() as fake:
        client = Client(providers=keyless(fake), ledger=url)
        client.chat("openai/gpt-4o-mini", [{"role": "user", "content": "hi"}])  # a local URL: placeholder key
        assert SEALED not in fake.requests[-1].headers["authorization"]
        SealedKeys(client.ledger.store, master).set("openai", SEALED)
        client._sealed.expire()  # noqa: SLF001 - stands in for REFRESH_SECONDS passing
        client.chat("openai/gpt-4o-mini", [{"role": "user", "content": "hi"}])
        assert fake.requests[-1].headers["authorization"] == f"Bearer {SEALED}"
        # rotated: the next read uses the new key, no restart
        SealedKeys(client.ledger.store, master).set("openai", SEALED + "-v2")
        client._sealed.expire()  # noqa: SLF001
        client.chat("openai/gpt-4o-mini", [{"role": "user", "content": "hi"}])
        assert fake.requests[-1].headers["authorization"] == f"Bearer {SEALED}-v2"
        client.close()
        configured = keyless(fake)
        configured["openai"]["api_key"] = "sk-from-config"
        client = Client(providers=configured, ledger=url)
        client.chat("openai/gpt-4o-mini", [{"role": "user", "content": "hi"}])
        assert fake.requests[-1].headers["authorization"] == "Bearer sk-from-config"
        client.close()
        dump = subprocess.run(["sqlite3", f"{tmp_path}/l.db", ".dump"], capture_output=True,
                              text=True, check=True).stdout
        assert SEALED not in dump


def test_gateway_serves_and_tests_with_the_sealed_key(tmp_path: Path, master: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    import logging
    caplog.set_level(logging.INFO)
    with FakeProvider() as fake:
        store = open_store(f"sqlite:///{tmp_path}/l.db")
        SealedKeys(store, master).set("openai", SEALED)
        store.close()
        client = Client(providers=keyless(fake), ledger=f"sqlite:///{tmp_path}/l.db")
        from unillm.server.app import create_app

        from .test_server_support import Served, serve_app
        app = create_app(client)
        admin, _ = app.state.gateway.keys.create(admin=True)
        for url in serve_app(app):
            served = Served(url, app, client, admin)
            oa = served.openai()
            resp = oa.chat.completions.create(model="openai/gpt-4o-mini",
                                              messages=[{"role": "user", "content": "hi"}])
            assert resp.choices[0].message.content
            assert fake.requests[-1].headers["authorization"] == f"Bearer {SEALED}"
            models = httpx.get(url + "/v1/models", headers={"authorization": f"Bearer {admin}"})
            assert "openai/gpt-4o-mini" in models.text
            r = httpx.post(url + "/admin/provider-keys/openai/test", headers={"authorization": f"Bearer {admin}"})
            assert r.status_code == 200 and r.json()["ok"] is True and r.json()["key"] == "sealed", r.text
            assert fake.requests[-1].json.get("max_tokens") == 1 or fake.requests[-1].json.get("max_completion_tokens") == 1
            fake.queue(Reply(status=401))
            r = httpx.post(url + "/admin/provider-keys/openai/test", headers={"authorization": f"Bearer {admin}"})
            assert r.status_code == 200 and r.json()["ok"] is False and "Authentication" in r.json()["error"]
            assert SEALED not in r.text
            r = httpx.post(url + "/admin/provider-keys/cohere/test", headers={"authorization": f"Bearer {admin}"})
            assert r.json()["ok"] is False and "unillm secrets set cohere" in r.json()["error"]
            tenant, _ = app.state.gateway.keys.create()
            r = httpx.post(url + "/admin/provider-keys/openai/test", headers={"authorization": f"Bearer {tenant}"})
            assert r.status_code == 403
            exported = httpx.get(url + "/v1/analytics", headers={"authorization": f"Bearer {admin}"})
            assert SEALED not in exported.text
        client.close()
        dump = subprocess.run(["sqlite3", f"{tmp_path}/l.db", ".dump"], capture_output=True,
                              text=True, check=True).stdout
        assert SEALED not in dump and "provider-key-test" in dump
        assert SEALED not in caplog.text


def test_gateway_start_fails_cleanly_with_a_wrong_master_key(tmp_path: Path, master: str,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from unillm.server.app import create_app
    with FakeProvider() as fake:
        client = Client(providers=keyless(fake), ledger=f"sqlite:///{tmp_path}/l.db")
        SealedKeys(client.ledger.store, master).set("openai", SEALED)
        monkeypatch.setenv("UNILLM_MASTER_KEY", Fernet.generate_key().decode())
        app = create_app(client)

        async def start() -> None:
            async with app.router.lifespan_context(app):
                pass
        with pytest.raises(errors.ConfigError, match="master key does not open"):
            asyncio.run(start())
        client.close()


def test_cli_set_list_delete(tmp_path: Path, master: str, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "unillm.toml"
    cfg.write_text(f'ledger = "sqlite:///{tmp_path}/l.db"\n')
    run = CliRunner()
    r = run.invoke(cli, ["secrets", "set", "openai", "--config", str(cfg)], input=SEALED + "\n")
    assert r.exit_code == 0, r.output
    assert SEALED not in r.output  # hidden prompt: never echoed
    monkeypatch.setenv("MY_ANTHROPIC", "sk-ant-from-env-123")
    r = run.invoke(cli, ["secrets", "set", "anthropic", "--from-env", "MY_ANTHROPIC", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    r = run.invoke(cli, ["secrets", "list", "--config", str(cfg)])
    assert "openai" in r.output and "anthropic" in r.output
    assert SEALED not in r.output and "from-env" not in r.output
    store = open_store(f"sqlite:///{tmp_path}/l.db")
    assert SealedKeys(store, master).all() == {"openai": SEALED, "anthropic": "sk-ant-from-env-123"}
    r = run.invoke(cli, ["secrets", "delete", "openai", "--config", str(cfg)])
    assert r.exit_code == 0 and SealedKeys(store, master).all() == {"anthropic": "sk-ant-from-env-123"}
    store.close()
    r = run.invoke(cli, ["secrets", "delete", "openai", "--config", str(cfg)])
    assert r.exit_code != 0 and "no sealed key" in r.output
    monkeypatch.delenv("UNILLM_MASTER_KEY")
    r = run.invoke(cli, ["secrets", "set", "openai", "--from-env", "MY_ANTHROPIC", "--config", str(cfg)])
    assert r.exit_code != 0 and "need a master key" in r.output and "Traceback" not in r.output
    keyfile = tmp_path / "master.key"
    keyfile.write_text(master + "\n")
    cfg.write_text(f'ledger = "sqlite:///{tmp_path}/l.db"\nmaster_key_file = "master.key"\n')
    r = run.invoke(cli, ["secrets", "set", "openai", "--from-env", "MY_ANTHROPIC", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
