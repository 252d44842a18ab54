"""Every admin change writes one audit row: who (the admin key's id, or "cli"), what
(action, object, before/after with secrets blanked), when — over HTTP and from the CLI."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from tests.test_server_support import Served, served, upstream  # noqa: F401 - fixtures
from unillm.cli import cli
from unillm.server import audit

pytest.importorskip("cryptography")
from cryptography.fernet import Fernet

SECRET = "sk-provider-SEALED-in-audit-never-91"
MASTER = Fernet.generate_key().decode()


def _h(s: Served) -> dict[str, str]:
    return {"authorization": f"Bearer {s.admin}"}


def _ok(r: httpx.Response) -> str:
    assert r.status_code in (200, 201), r.text
    return r.text


def _cli(s: Served, *args: str, stdin: str | None = None) -> str:
    ledger = str(s.client.settings.ledger)
    r = CliRunner().invoke(cli, [*args, "--ledger", ledger], input=stdin)
    assert r.exit_code == 0, r.output
    return r.output


def _key_id(s: Served) -> str:
    _, key = s.gateway.keys.create(user="carol")
    return str(key.id)


# each: (what it does, returns the text the change answered with) -> the row it must write
def http_key_create(s: Served) -> str:
    return _ok(httpx.post(s.url + "/admin/keys", headers=_h(s),
                          json={"user": "bob", "expires_at": "2031-01-31", "models": ["gpt-4o-mini"]}))


def http_key_revoke(s: Served) -> str:
    return _ok(httpx.delete(f"{s.url}/admin/keys/{_key_id(s)}", headers=_h(s)))


def http_key_rotate(s: Served) -> str:
    return _ok(httpx.post(f"{s.url}/admin/keys/{_key_id(s)}/rotate", headers=_h(s), json={"grace_seconds": 60}))


def http_price_put(s: Served) -> str:
    return _ok(httpx.put(s.url + "/admin/prices/openai/gpt-4o-mini", headers=_h(s),
                         json={"input": "1", "output": "2"}))


def http_budget(method: str) -> Callable[[Served], str]:
    def run(s: Served) -> str:
        if method != "POST":
            _ok(httpx.post(s.url + "/admin/budgets", headers=_h(s), json={"name": "b", "limit_usd": "1"}))
        path = "/admin/budgets" if method == "POST" else "/admin/budgets/b"
        body = {"name": "b", "limit_usd": "1"} if method == "POST" else {"limit_usd": "2"}
        return _ok(httpx.request(method, s.url + path, headers=_h(s), json=None if method == "DELETE" else body))
    return run


def http_rule(method: str) -> Callable[[Served], str]:
    rule = {"name": "r", "when": {"model": "gpt-4o"}, "use": "gpt-4o-mini"}

    def run(s: Served) -> str:
        if method != "POST":
            _ok(httpx.post(s.url + "/admin/rules", headers=_h(s), json=rule))
        path = "/admin/rules" if method == "POST" else "/admin/rules/r"
        body = rule if method == "POST" else {"when": {"model": "gpt-4.1"}}
        return _ok(httpx.request(method, s.url + path, headers=_h(s), json=None if method == "DELETE" else body))
    return run


def cli_secret_set(s: Served) -> str:
    return _cli(s, "secrets", "set", "openai", stdin=SECRET + "\n")


def cli_secret_delete(s: Served) -> str:
    cli_secret_set(s)
    return _cli(s, "secrets", "delete", "openai")


def cli_key_create(s: Served) -> str:
    return _cli(s, "keys", "create", "--user", "dan", "--expires-at", "2031-01-31")


def cli_key_revoke(s: Served) -> str:
    return _cli(s, "keys", "revoke", _key_id(s))


def cli_key_rotate(s: Served) -> str:
    return _cli(s, "keys", "rotate", _key_id(s), "--grace", "60")


CASES: list[tuple[Callable[[Served], str], str, str, str]] = [
    # (change, action, object prefix, actor: "admin" = the admin key's id)
    (http_key_create, "keys.create", "key:", "admin"),
    (http_key_revoke, "keys.revoke", "key:", "admin"),
    (http_key_rotate, "keys.rotate", "key:", "admin"),
    (http_price_put, "prices.put", "price:openai/gpt-4o-mini@", "admin"),
    (http_budget("POST"), "budgets.create", "budget:b", "admin"),
    (http_budget("PATCH"), "budgets.update", "budget:b", "admin"),
    (http_budget("DELETE"), "budgets.delete", "budget:b", "admin"),
    (http_rule("POST"), "rules.create", "rule:r", "admin"),
    (http_rule("PATCH"), "rules.update", "rule:r", "admin"),
    (http_rule("DELETE"), "rules.delete", "rule:r", "admin"),
    (cli_secret_set, "provider_keys.set", "provider_key:openai", "cli"),
    (cli_secret_delete, "provider_keys.delete", "provider_key:openai", "cli"),
    (cli_key_create, "keys.create", "key:", "cli"),
    (cli_key_revoke, "keys.revoke", "key:", "cli"),
    (cli_key_rotate, "keys.rotate", "key:", "cli"),
]


@pytest.mark.parametrize(("change", "action", "obj", "actor"), CASES, ids=[f"{c[1]}-{c[3]}" for c in CASES])
def test_every_admin_change_is_one_audit_row(served: Served, monkeypatch: pytest.MonkeyPatch,
                                             change: Callable[[Served], str], action: str, obj: str,
                                             actor: str) -> None:
    monkeypatch.setenv("UNILLM_MASTER_KEY", MASTER)
    started = datetime.now().astimezone()
    answer = change(served)
    rows = audit.rows(served.client.ledger.store)
    row = rows[0]  # the newest: the change itself (a set-up step may have written older ones)
    who = served.gateway.keys.verify(served.admin).id if actor == "admin" else "cli"
    assert (row.action, row.actor) == (action, who), [r.public() for r in rows]
    assert row.object.startswith(obj)
    assert datetime.fromisoformat(row.at) >= started
    assert (row.before, row.after) != (None, None)
    if action.endswith((".update", ".revoke", ".rotate", ".delete")):
        assert row.before is not None
    dumped = json.dumps([r.public() for r in rows])
    for secret in _secrets_in(answer) + [SECRET, MASTER]:
        assert secret not in dumped
    r = httpx.get(served.url + "/admin/audit", headers=_h(served), params={"limit": 1})
    assert r.json()["data"][0]["action"] == action


def _secrets_in(answer: str) -> list[str]:
    """The gateway key secrets an answer showed (once), which no audit row may hold."""
    import re

    from unillm.server.keys import PREFIX
    found = re.findall(re.escape(PREFIX) + r"[A-Za-z0-9_-]{20,}", answer)
    return found


def test_provider_key_test_changes_nothing_and_writes_no_row(served: Served, monkeypatch: Any,
                                                             tmp_path: Path) -> None:
    r = httpx.post(served.url + "/admin/provider-keys/openai/test", headers=_h(served))
    assert r.status_code == 200
    assert audit.rows(served.client.ledger.store) == []
