"""Sealed keys, key rotation and price overrides on both ledger backends (SQLite, PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("cryptography")

from cryptography.fernet import Fernet

from tests.servers import any_store, pg_url, postgres_server, postgres_url  # noqa: F401
from unillm import errors
from unillm.price_overrides import PriceOverrides
from unillm.sealed import SealedKeys
from unillm.server.keys import KeyStore


def test_sealed_keys_round_trip(any_store: Any) -> None:
    master = Fernet.generate_key().decode()
    sealed = SealedKeys(any_store, master)
    sealed.set("openai", "sk-one")
    sealed.set("openai", "sk-two")  # replaced, not duplicated
    assert sealed.all() == {"openai": "sk-two"} and [r["provider"] for r in sealed.list()] == ["openai"]
    with any_store.transaction() as tx:
        token = tx.execute("SELECT token FROM unillm_provider_keys").fetchall()[0][0]
    assert "sk-two" not in token
    with pytest.raises(errors.ConfigError, match="does not open"):
        SealedKeys(any_store, Fernet.generate_key().decode()).all()
    assert sealed.delete("openai") and not sealed.delete("openai")


def test_key_rotation_and_limits(any_store: Any) -> None:
    keys = KeyStore(any_store, ttl=0)
    old, key = keys.create(models=["openai/*"], expires_at="2999-01-01")
    assert keys.verify(old) == key and key.models == ("openai/*",)
    done = keys.rotate(key.id, grace_seconds=0)
    assert done is not None
    assert keys.verify(old) is None and keys.verify(done[0]) is not None


def test_price_overrides(any_store: Any) -> None:
    po = PriceOverrides(any_store)
    po.put("openai", "gpt-4o-mini", {"input": "1.5", "output": "2", "since": "2026-01-01"})
    po.put("openai", "gpt-4o-mini", {"input": "3", "output": "4", "since": "2026-06-01"})
    prices = po.prices()[("openai", "gpt-4o-mini")]
    assert [str(p.input) for p in prices] == ["1.5", "3"]
