"""Gateway keys: expiry, allowed models, rotation with a grace period (real openai SDK)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from unillm.server.keys import KeyStore

from .test_server_support import Served, served, upstream  # noqa: F401 - fixtures

openai = pytest.importorskip("openai")

MSG = [{"role": "user", "content": "hi"}]


def test_expired_key_is_401_expired(served: Served) -> None:
    old = served.key(expires_at="2020-01-01T00:00:00Z")
    with pytest.raises(openai.AuthenticationError) as info:
        served.openai(old).chat.completions.create(model="openai/gpt-4o-mini", messages=MSG)
    assert info.value.status_code == 401 and "expired" in str(info.value)
    assert info.value.code == "expired_api_key"
    fresh = served.key(expires_at="2999-01-01")
    assert served.openai(fresh).chat.completions.create(model="openai/gpt-4o-mini", messages=MSG).choices


def test_expiry_is_validated(served: Served) -> None:
    r = httpx.post(served.url + "/admin/keys", headers={"authorization": f"Bearer {served.admin}"},
                   json={"expires_at": "next tuesday"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "expires_at"
    r = httpx.post(served.url + "/admin/keys", headers={"authorization": f"Bearer {served.admin}"},
                   json={"models": "gpt"})
    assert r.status_code == 201 and r.json()["models"] == ["gpt"]
    r = httpx.post(served.url + "/admin/keys", headers={"authorization": f"Bearer {served.admin}"},
                   json={"models": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "models"


def test_allowed_models_globs(served: Served) -> None:
    r = httpx.post(served.url + "/admin/keys", headers={"authorization": f"Bearer {served.admin}"},
                   json={"models": ["openai/gpt-4o-mini*", "claude-haiku-*"]})
    assert r.status_code == 201, r.text
    limited = served.openai(r.json()["key"])
    assert limited.chat.completions.create(model="openai/gpt-4o-mini", messages=MSG).choices
    assert limited.chat.completions.create(model="gpt-4o-mini", messages=MSG).choices  # resolves to openai/
    with pytest.raises(openai.PermissionDeniedError) as info:
        limited.chat.completions.create(model="openai/gpt-4o", messages=MSG)
    assert "'openai/gpt-4o'" in str(info.value) and info.value.code == "model_not_allowed"


def test_rotation_keeps_the_old_secret_for_the_grace_period(served: Served) -> None:
    r = httpx.post(served.url + "/admin/keys", headers={"authorization": f"Bearer {served.admin}"},
                   json={"user": "ann"})
    old, key_id = r.json()["key"], r.json()["id"]
    r = httpx.post(served.url + f"/admin/keys/{key_id}/rotate",
                   headers={"authorization": f"Bearer {served.admin}"}, json={})
    assert r.status_code == 201, r.text
    new = r.json()["key"]
    assert new != old and r.json()["id"] == key_id and r.json()["user"] == "ann"
    for secret in (old, new):  # both work during the 24 h grace
        served.openai(secret).chat.completions.create(model="openai/gpt-4o-mini", messages=MSG)
    listed = httpx.get(served.url + "/admin/keys", headers={"authorization": f"Bearer {served.admin}"}).text
    assert new not in listed and old not in listed
    # rotate again with no grace: the previous secret stops at once, the newest works
    r = httpx.post(served.url + f"/admin/keys/{key_id}/rotate",
                   headers={"authorization": f"Bearer {served.admin}"}, json={"grace_seconds": 0})
    newest = r.json()["key"]
    for secret in (old, new):
        with pytest.raises(openai.AuthenticationError):
            served.openai(secret).chat.completions.create(model="openai/gpt-4o-mini", messages=MSG)
    served.openai(newest).chat.completions.create(model="openai/gpt-4o-mini", messages=MSG)
    r = httpx.post(served.url + f"/admin/keys/{key_id}/rotate",
                   headers={"authorization": f"Bearer {served.admin}"}, json={"grace_seconds": -1})
    assert r.status_code == 400 and r.json()["error"]["param"] == "grace_seconds"
    r = httpx.post(served.url + "/admin/keys/key_nope/rotate",
                   headers={"authorization": f"Bearer {served.admin}"})
    assert r.status_code == 404


def test_old_secret_lapses_after_grace(tmp_path: Path) -> None:
    from unillm.ledger import open_store
    store = open_store(f"sqlite:///{tmp_path}/l.db")
    keys = KeyStore(store, ttl=0)
    old, key = keys.create(user="bo")
    done = keys.rotate(key.id, grace_seconds=1)
    assert done is not None
    new, _ = done
    assert keys.verify(old) is not None and keys.verify(new) is not None
    time.sleep(1.2)
    assert keys.verify(old) is None and keys.verify(new) is not None
    store.close()


def test_cli_rotate_and_models(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from unillm.cli import cli
    cfg = tmp_path / "unillm.toml"
    cfg.write_text(f'ledger = "sqlite:///{tmp_path}/l.db"\n')
    run = CliRunner()
    r = run.invoke(cli, ["keys", "create", "--models", "openai/*,gpt-4o", "--expires-at", "2999-01-01",
                         "--format", "json", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    made = json.loads(r.output)
    assert made["models"] == ["openai/*", "gpt-4o"] and made["expires_at"].startswith("2999-01-01")
    r = run.invoke(cli, ["keys", "rotate", made["id"], "--grace", "60", "--format", "json", "--config", str(cfg)])
    assert r.exit_code == 0, r.output
    rotated = json.loads(r.output)
    assert rotated["key"] != made["key"] and rotated["old_until"]
    r = run.invoke(cli, ["keys", "rotate", "key_nope", "--config", str(cfg)])
    assert r.exit_code != 0 and "no active key" in r.output
