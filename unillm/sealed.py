"""Sealed provider keys: API keys stored encrypted in the ledger's database.

``unillm secrets set openai`` encrypts the key with `cryptography`'s Fernet (AES-128-CBC and
HMAC-SHA256, authenticated) under a master key from ``UNILLM_MASTER_KEY`` or the file named
by ``master_key_file`` in ``unillm.toml``; the table ``unillm_provider_keys`` holds only the
ciphertext, so a database dump or a ledger export never has the key in clear.

A `Client` uses a provider's sealed key only when its config and environment give none
(``api_key`` / ``api_key_env`` win). Keys are read when first needed and re-read at most
every `REFRESH_SECONDS`, so a key rotated with ``unillm secrets set`` reaches a running
gateway within that delay, without a restart.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Collection
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from . import errors

TABLE = "unillm_provider_keys"
MASTER_ENV = "UNILLM_MASTER_KEY"
REFRESH_SECONDS = 30.0


def generate_master_key() -> str:
    """A new random Fernet key (url-safe base64 of 32 bytes)."""
    from cryptography.fernet import Fernet
    return Fernet.generate_key().decode()


def master_key(settings: Any = None, *, environ: Any = None) -> str | None:
    """The master key: ``UNILLM_MASTER_KEY``, else ``master_key_file``'s content, else None."""
    env = os.environ if environ is None else environ
    value = env.get(MASTER_ENV)
    if value and value.strip():
        return str(value).strip()
    path = getattr(settings, "master_key_file", None) if settings is not None else None
    if path:
        source = getattr(settings, "source", None)
        try:
            return Path(path).read_text().strip() or None
        except OSError as exc:
            raise errors.ConfigError(f"cannot read the master key file: {exc.strerror}",
                                     file=source, key="master_key_file", value=path) from None
    return None


def _fernet(key: str | None, source: str | None) -> Any:
    if not key:
        raise errors.ConfigError(
            f"sealed provider keys need a master key: set {MASTER_ENV} or master_key_file "
            "(create one with `unillm secrets keygen`)", file=source, key="master_key_file")
    try:
        from cryptography.fernet import Fernet
    except ImportError:
        raise errors.ConfigError("sealed provider keys need the cryptography package: "
                                 "pip install 'unillm[secrets]'", file=source) from None
    try:
        return Fernet(key.encode())
    except (ValueError, TypeError):
        raise errors.ConfigError(
            "the master key is not a Fernet key (32 url-safe base64-encoded bytes; "
            "create one with `unillm secrets keygen`)", file=source,
            key=MASTER_ENV if os.environ.get(MASTER_ENV) else "master_key_file") from None


class SealedKeys:
    """The sealed keys in one ledger store. ``key`` is the master key (None: none set);
    only `set` and `get`/`all` need it, listing and deleting do not."""

    def __init__(self, store: Any, key: str | None, *, source: str | None = None) -> None:
        self.store = store
        self._key = key
        self.source = source

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self.store.transaction() as tx:
            return list(tx.execute(sql, params).fetchall())

    def set(self, provider: str, secret: str, *, actor: str = "python") -> None:
        """Store (or replace) ``provider``'s key, encrypted; one audit row by ``actor`` (who
        and when, never the key or its ciphertext) in the same transaction."""
        from .server import audit
        if not provider or not secret or not secret.strip():
            raise errors.InvalidRequestError("a provider name and a non-empty key are needed")
        token = _fernet(self._key, self.source).encrypt(secret.strip().encode()).decode()
        now = datetime.now(timezone.utc)
        with self.store.transaction() as tx:
            old = tx.execute(f"SELECT set_at FROM {TABLE} WHERE provider = ?", (provider,)).fetchone()
            tx.execute(f"DELETE FROM {TABLE} WHERE provider = ?", (provider,))
            tx.execute(f"INSERT INTO {TABLE} (provider, token, set_at) VALUES (?, ?, ?)",
                       (provider, token, now.isoformat()))
            audit.write(tx, actor, "provider_keys.set", f"provider_key:{provider}",
                        None if old is None else {"provider": provider, "set_at": old[0]},
                        {"provider": provider, "set_at": now.isoformat()}, now)

    def list(self) -> list[dict[str, str]]:
        """Provider names and when each key was set (never a value)."""
        return [{"provider": p, "set_at": at}
                for p, at in self._rows(f"SELECT provider, set_at FROM {TABLE} ORDER BY provider")]

    def delete(self, provider: str, *, actor: str = "python") -> bool:
        """Delete ``provider``'s sealed key (audited like `set`); False when it has none."""
        from .server import audit
        with self.store.transaction() as tx:
            old = tx.execute(f"SELECT set_at FROM {TABLE} WHERE provider = ?", (provider,)).fetchone()
            if old is None:
                return False
            tx.execute(f"DELETE FROM {TABLE} WHERE provider = ?", (provider,))
            audit.write(tx, actor, "provider_keys.delete", f"provider_key:{provider}",
                        {"provider": provider, "set_at": old[0]}, None)
        return True

    def all(self, only: Collection[str] | None = None) -> dict[str, str]:
        """Every sealed key (of ``only``), decrypted. ConfigError without the right master key."""
        rows = [r for r in self._rows(f"SELECT provider, token FROM {TABLE}")
                if only is None or r[0] in only]
        if not rows:
            return {}
        fernet = _fernet(self._key, self.source)
        from cryptography.fernet import InvalidToken
        out = {}
        for provider, token in rows:
            try:
                out[provider] = fernet.decrypt(token.encode()).decode()
            except InvalidToken:
                raise errors.ConfigError(
                    f"the master key does not open the sealed key of {provider!r} (wrong "
                    f"{MASTER_ENV} or master_key_file?)", file=self.source, key="master_key_file") from None
        return out

    def get(self, provider: str) -> str | None:
        return self.all().get(provider)


class SealedCache:
    """What a `Client` consults: its providers' sealed keys, re-read at most every
    ``refresh`` seconds (`REFRESH_SECONDS`).

    ``open_store`` opens the ledger store (the Client's); nothing is read until a provider
    without a configured key is used. Only those providers' rows are decrypted, so a sealed
    key that the config overrides cannot fail a start."""

    def __init__(self, open_store: Callable[[], Any], settings: Any, *,
                 refresh: float = REFRESH_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self._open = open_store
        self._settings = settings
        self._base = dict(settings.providers)  # as configured, before any sealed key
        self.refresh = refresh
        self._monotonic = monotonic
        self._at: float | None = None
        self._keys: dict[str, str] = {}
        self._lock = threading.Lock()

    def _unkeyed(self, provider: str) -> bool:
        base = self._base.get(provider)
        return base is not None and not base.resolved_api_key()

    def stale(self) -> bool:
        """The next `keys` reads the database (async callers do that off the loop first)."""
        return self._at is None or self._monotonic() - self._at >= self.refresh

    def keys(self) -> dict[str, str]:
        """Sealed keys of the providers the config gives no key (re-read when stale)."""
        now = self._monotonic()
        with self._lock:
            if self._at is not None and now - self._at < self.refresh:
                return self._keys
            store = self._open()
            with store.transaction() as tx:
                rows = [r[0] for r in tx.execute(f"SELECT provider FROM {TABLE}").fetchall()]
            needed = [p for p in rows if self._unkeyed(p)]
            self._keys = SealedKeys(store, master_key(self._settings) if needed else None,
                                    source=getattr(self._settings, "source", None)
                                    ).all(needed) if needed else {}
            self._at = now
            return self._keys

    def apply(self, providers: dict[str, Any], adapters: dict[str, Any], provider: str) -> str | None:
        """Put ``provider``'s sealed key (if it has one and needs it) into ``providers``; a
        changed key drops its cached adapter (the next call builds one with the new key;
        calls in flight finish on the old). Returns the sealed key in use, or None."""
        if not self._unkeyed(provider):
            return None
        key = self.keys().get(provider)
        base, current = self._base[provider], providers.get(provider)
        in_use = current.resolved_api_key() if current is not None else None
        if key != in_use:
            from pydantic import SecretStr
            providers[provider] = base if key is None else base.model_copy(update={"api_key": SecretStr(key)})
            adapters.pop(provider, None)
        return key

    def expire(self) -> None:
        """Re-read on the next use (after a key was set or deleted through this process)."""
        with self._lock:
            self._at = None
