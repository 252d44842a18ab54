"""The audit log: one append-only row per admin change, in the ledger's database.

A row says who (the admin key's id), what (an action such as ``keys.create``, the object
it touched, and the object before and after, as JSON) and when (UTC). Secrets never reach
it: `redact` blanks every field named like a secret before a row is written. The table
(migration ``0013_admin``) refuses UPDATE and DELETE with a trigger on both backends.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

TABLE = "unillm_audit"
#: field names whose values are never written: a key's secret or hash, a provider key
SECRET_FIELDS = frozenset({"key", "secret", "hash", "api_key", "password", "token", "authorization"})
REDACTED = "***"
MAX_LIMIT = 1000


def redact(value: Any) -> Any:
    """``value`` with every secret-named field replaced by ``***`` (recursively)."""
    if isinstance(value, Mapping):
        return {k: REDACTED if str(k).lower() in SECRET_FIELDS and v is not None else redact(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    if isinstance(value, Decimal):
        return str(value)
    return value


def _dump(value: Any) -> str | None:
    return None if value is None else json.dumps(redact(value), sort_keys=True, default=str)


@dataclass(frozen=True)
class AuditRow:
    seq: int
    at: str
    actor: str
    action: str
    object: str
    before: Any
    after: Any

    def public(self) -> dict[str, Any]:
        return {"id": self.seq, "at": self.at, "actor": self.actor, "action": self.action,
                "object": self.object, "before": self.before, "after": self.after}


def write(tx: Any, actor: str, action: str, obj: str, before: Any = None, after: Any = None,
          at: datetime | None = None) -> None:
    """Append one row inside ``tx`` (the change's own transaction, where there is one)."""
    stamp = (at or datetime.now(timezone.utc)).isoformat()
    tx.execute(f"INSERT INTO {TABLE} (at, actor, action, object, before, after) VALUES (?, ?, ?, ?, ?, ?)",
               (stamp, actor, action, obj, _dump(before), _dump(after)))


def record(store: Any, actor: str, action: str, obj: str, before: Any = None, after: Any = None) -> None:
    """Append one row in a transaction of its own."""
    with store.transaction() as tx:
        write(tx, actor, action, obj, before, after)


def rows(store: Any, *, limit: int = 100, after: int | None = None,
         before: int | None = None) -> list[AuditRow]:
    """Newest first: at most ``limit`` rows, only those with id > ``after`` / < ``before``."""
    where, params = [], []
    if after is not None:
        where.append("seq > ?")
        params.append(after)
    if before is not None:
        where.append("seq < ?")
        params.append(before)
    sql = f"SELECT seq, at, actor, action, object, before, after FROM {TABLE}"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY seq DESC LIMIT ?"
    with store.transaction() as tx:
        found = tx.execute(sql, (*params, max(1, min(limit, MAX_LIMIT)))).fetchall()
    return [AuditRow(int(r[0]), r[1], r[2], r[3], r[4], _load(r[5]), _load(r[6])) for r in found]


def _load(text: str | None) -> Any:
    return None if text is None else json.loads(text)
