"""Gateway API keys: created once, stored only as a hash, each carrying tenancy.

A key is ``ulk_`` + 43 url-safe characters: 256 random bits from `secrets`. The
keys table (migration ``0005_gateway_keys``, in the ledger's database) keeps its
SHA-256, never the key. A pepper (HMAC with a server secret) protects *guessable*
secrets such as passwords from an offline search after a database leak; a
256-bit random key cannot be searched for, so a plain hash is as strong and
leaves no extra secret to distribute between ``unillm keys`` and ``unillm serve``.

Each key supplies the tags of every call made with it (``key_id``, ``user``,
``project``), an optional budget, RPM/TPM limits, and whether it is an admin key.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from .. import errors

TABLE = "unillm_keys"
PREFIX = "ulk_"
PERIODS = ("daily", "weekly", "monthly", "total")
_COLUMNS = ("id", "prefix", "user_name", "project", "admin", "budget_usd", "period", "rpm", "tpm",
            "created_at", "revoked_at", "note", "expires_at", "models", "old_until")
DEFAULT_GRACE_SECONDS = 86_400  #: how long a rotated key's old secret keeps working


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def bearer(authorization: str) -> str | None:
    """The key of an ``Authorization: Bearer <key>`` header value (None: no bearer key)."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    return token if token and scheme.lower() == "bearer" else None


@dataclass(frozen=True)
class ApiKey:
    """One gateway key as stored (without its secret)."""

    id: str
    prefix: str
    user: str | None = None
    project: str | None = None
    admin: bool = False
    budget_usd: Decimal | None = None
    period: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    created_at: str = ""
    revoked_at: str | None = None
    note: str | None = None
    expires_at: str | None = None             #: ISO 8601 UTC; past it the key is refused (401)
    models: tuple[str, ...] | None = None     #: globs of the models it may call; None: any
    old_until: str | None = None              #: a rotated key's previous secret works until then

    @property
    def active(self) -> bool:
        return self.revoked_at is None

    def expired(self, now: datetime | None = None) -> bool:
        return self.expires_at is not None and \
            _parse_when(self.expires_at) <= (now or datetime.now(timezone.utc))

    def allows(self, *names: str) -> bool:
        """May this key call a model known by any of ``names`` (as asked, and resolved)?"""
        return self.models is None or any(fnmatch.fnmatchcase(n, g) for g in self.models for n in names)

    def tags(self) -> dict[str, str]:
        """The tags every call made with this key carries."""
        out = {"key_id": self.id}
        if self.user:
            out["user"] = self.user
        if self.project:
            out["project"] = self.project
        return out

    def budget_spec(self) -> dict[str, Any] | None:
        """This key's budget as a `[[budgets]]` table (scoped to its key_id), or None."""
        if self.budget_usd is None:
            return None
        return {"name": f"key:{self.id}", "scope": {"key_id": self.id},
                "period": self.period or "monthly", "limit_usd": self.budget_usd, "on_exceed": "raise"}

    def public(self) -> dict[str, Any]:
        """JSON-ready, for listings (the hash is never shown)."""
        d = asdict(self)
        d["budget_usd"] = str(self.budget_usd) if self.budget_usd is not None else None
        d["active"] = self.active
        d["models"] = list(self.models) if self.models is not None else None
        return d


def _row_to_key(row: Any) -> ApiKey:
    d = dict(zip(_COLUMNS, row))
    return ApiKey(id=d["id"], prefix=d["prefix"], user=d["user_name"], project=d["project"],
                  admin=bool(d["admin"]),
                  budget_usd=Decimal(d["budget_usd"]) if d["budget_usd"] is not None else None,
                  period=d["period"], rpm=d["rpm"], tpm=d["tpm"], created_at=d["created_at"],
                  revoked_at=d["revoked_at"], note=d["note"], expires_at=d["expires_at"],
                  models=tuple(json.loads(d["models"])) if d["models"] is not None else None,
                  old_until=d["old_until"])


def _parse_when(text: str) -> datetime:
    when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _check_expiry(expires_at: Any) -> str | None:
    if expires_at is None:
        return None
    try:
        return _parse_when(str(expires_at) if isinstance(expires_at, str) else "?").astimezone(
            timezone.utc).isoformat()
    except ValueError:
        raise errors.InvalidRequestError(
            f"expires_at must be an ISO 8601 date or time (2027-01-31 or 2027-01-31T12:00:00Z), "
            f"got {expires_at!r}", param="expires_at") from None


def _check_models(models: Any) -> tuple[str, ...] | None:
    if models is None:
        return None
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
    if not isinstance(models, (list, tuple)) or not models or \
            not all(isinstance(m, str) and m.strip() and len(m) <= 200 for m in models):
        raise errors.InvalidRequestError(
            "models must be a non-empty list of model names or globs (\"openai/gpt-4o*\"), "
            f"got {models!r}", param="models")
    return tuple(m.strip() for m in models)


def _check_limits(budget_usd: Any, period: str | None, rpm: Any, tpm: Any) -> Decimal | None:
    budget = None
    if budget_usd is not None:
        try:
            budget = Decimal(str(budget_usd))
        except InvalidOperation:
            raise errors.InvalidRequestError(f"budget_usd must be a number, got {budget_usd!r}",
                                             param="budget_usd") from None
        if not budget.is_finite() or budget < 0:
            raise errors.InvalidRequestError("budget_usd must be >= 0", param="budget_usd")
    if period is not None and period not in PERIODS:
        raise errors.InvalidRequestError(f"period must be one of {', '.join(PERIODS)}, got {period!r}",
                                         param="period")
    for name, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise errors.InvalidRequestError(f"{name} must be a whole number >= 1, got {value!r}",
                                             param=name)
    return budget


class KeyStore:
    """Keys in the ledger store. Verified keys are cached for ``ttl`` seconds, so a
    key revoked by another process (``unillm keys revoke``) stops working within
    ``ttl``; one revoked through this store stops at once."""

    def __init__(self, store: Any, *, ttl: float = 5.0,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl = ttl
        self._monotonic = monotonic
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._lock = threading.Lock()

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self.store.transaction() as tx:
            return list(tx.execute(sql, params).fetchall())

    def create(self, *, user: str | None = None, project: str | None = None, admin: bool = False,
               budget_usd: Any = None, period: str | None = None, rpm: int | None = None,
               tpm: int | None = None, note: str | None = None, expires_at: Any = None,
               models: Any = None) -> tuple[str, ApiKey]:
        """A new key: returns the secret (shown once) and what is stored."""
        budget = _check_limits(budget_usd, period, rpm, tpm)
        expires, allowed = _check_expiry(expires_at), _check_models(models)
        secret = PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(id="key_" + secrets.token_hex(6), prefix=secret[:10], user=user or None,
                     project=project or None, admin=admin, budget_usd=budget,
                     period=(period or "monthly") if budget is not None else period,
                     rpm=rpm, tpm=tpm, created_at=datetime.now(timezone.utc).isoformat(), note=note,
                     expires_at=expires, models=allowed)
        with self.store.transaction() as tx:
            tx.execute(f"INSERT INTO {TABLE} (id, hash, prefix, user_name, project, admin, budget_usd, "
                       "period, rpm, tpm, created_at, revoked_at, note, expires_at, models) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (key.id, hash_key(secret), key.prefix, key.user, key.project, int(admin),
                        str(budget) if budget is not None else None, key.period, rpm, tpm,
                        key.created_at, None, note, expires,
                        json.dumps(list(allowed)) if allowed is not None else None))
        return secret, key

    def rotate(self, key_id: str, *, grace_seconds: Any = DEFAULT_GRACE_SECONDS) -> tuple[str, ApiKey] | None:
        """A new secret for ``key_id`` (same id, tenancy and limits), shown once; the old
        secret keeps working for ``grace_seconds``. None when no active key has this id."""
        if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, (int, float)) \
                or not 0 <= grace_seconds <= 366 * 86_400:
            raise errors.InvalidRequestError(
                f"grace_seconds must be a number of seconds from 0 to 31622400, got {grace_seconds!r}",
                param="grace_seconds")
        secret = PREFIX + secrets.token_urlsafe(32)
        until = datetime.fromtimestamp(time.time() + grace_seconds, timezone.utc).isoformat()
        with self.store.transaction() as tx:
            cur = tx.execute(f"UPDATE {TABLE} SET old_hash = hash, old_until = ?, hash = ?, prefix = ? "
                             "WHERE id = ? AND revoked_at IS NULL",
                             (until, hash_key(secret), secret[:10], key_id))
            done = bool(cur.rowcount)
        self._forget(key_id)
        key = self.get(key_id) if done else None
        return (secret, key) if key is not None else None

    def _forget(self, key_id: str) -> None:
        with self._lock:
            self._cache = {h: v for h, v in self._cache.items() if v[1] is None or v[1].id != key_id}

    def list(self, include_revoked: bool = False) -> list[ApiKey]:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM {TABLE}"
        if not include_revoked:
            sql += " WHERE revoked_at IS NULL"
        return [_row_to_key(r) for r in self._rows(sql + " ORDER BY created_at, id")]

    def get(self, key_id: str) -> ApiKey | None:
        rows = self._rows(f"SELECT {', '.join(_COLUMNS)} FROM {TABLE} WHERE id = ?", (key_id,))
        return _row_to_key(rows[0]) if rows else None

    def revoke(self, key_id: str) -> bool:
        """Revoke a key; False when no active key has this id."""
        with self.store.transaction() as tx:
            cur = tx.execute(f"UPDATE {TABLE} SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                             (datetime.now(timezone.utc).isoformat(), key_id))
            done = bool(cur.rowcount)
        self._forget(key_id)
        return done

    def fresh(self, secret: str) -> bool:
        """True when `verify` would answer ``secret`` from memory (no SQL): a cached answer
        younger than ``ttl``, or a secret that is no key at all."""
        return self.cached(secret)[0]

    def cached(self, secret: str) -> tuple[bool, ApiKey | None]:
        """``(True, what verify answers)`` when that comes from memory (no SQL), else
        ``(False, None)``: then `averify` reads the table off the event loop."""
        if not secret.startswith(PREFIX) or len(secret) > 200:
            return True, None
        hit = self._cache.get(hash_key(secret))
        if hit is not None and self._monotonic() - hit[0] < self.ttl:
            return True, hit[1]
        return False, None

    async def averify(self, secret: str) -> ApiKey | None:
        """`verify` on the ledger store's threads (never on the event loop: a cold key reads SQL)."""
        io = getattr(self.store, "io", None)
        if io is not None:
            return await io.run(self.verify, secret, off_loop=True)  # type: ignore[no-any-return]
        return await self.store.arun(self.verify, secret)  # type: ignore[no-any-return]

    def verify(self, secret: str) -> ApiKey | None:
        """The active key ``secret`` is, or None. Constant-time on the hash compare."""
        if not secret.startswith(PREFIX) or len(secret) > 200:
            return None
        digest = hash_key(secret)
        now = self._monotonic()
        with self._lock:
            hit = self._cache.get(digest)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        rows = self._rows(f"SELECT {', '.join(_COLUMNS)}, hash, old_hash FROM {TABLE} "
                          "WHERE hash = ? OR old_hash = ?", (digest, digest))
        key = None
        for row in rows:
            found = _row_to_key(row[:-2])
            if hmac.compare_digest(row[-2], digest):
                key = found if found.active else None
            elif row[-1] and hmac.compare_digest(row[-1], digest) and found.old_until \
                    and _parse_when(found.old_until) > datetime.now(timezone.utc):
                key = found if found.active else None  # a rotated key's old secret, in its grace
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[digest] = (now, key)
        return key
