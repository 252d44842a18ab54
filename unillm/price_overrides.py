"""Price overrides set over ``PUT /admin/prices/{provider}/{model}``, kept in the ledger.

An override is one pricing.toml entry (``input``, ``output``, ... ``tiers``, ``note``)
with an effective day ``since`` (default: today, UTC), checked exactly as a price file's
entry is (`unillm.price_files`). Overrides are the top layer: on and after its ``since``
a model's override wins over the bundled book and the user's price file; before it, the
book's own prices apply. A `Client` re-reads them at most every `REFRESH_SECONDS`; one set
through the same process applies to the next call at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any

from . import errors

TABLE = "unillm_price_overrides"
REFRESH_SECONDS = 5.0
LABEL = "PUT /admin/prices"


def check_entry(provider: str, model: str, body: Any) -> tuple[date, dict[str, Any]]:
    """``(since, checked table)``, or the ConfigError a price file would get for it."""
    from .price_files import _HISTORY_KEYS, _check_table, model_key
    from .pricing import _build_price
    key = model_key(provider, model)
    if not isinstance(body, Mapping):
        raise errors.ConfigError("must be a table of prices, e.g. {\"input\": \"0.15\", \"output\": \"0.6\"}",
                                 file=LABEL, key=key, value=body)
    allowed = frozenset(_HISTORY_KEYS - {"until"})
    # JSON numbers arrive as floats: money must be exact, so decimals are sent as strings
    raw = {k: (Decimal(v) if isinstance(v, str) and k not in ("note", "since") and _num(v) else v)
           for k, v in body.items()}
    table = _check_table(raw, allowed, LABEL, key)
    since = table.pop("since", None) or datetime.now(timezone.utc).date()
    _build_price(provider, model, table, LABEL, key, "override", None)  # complete: input and output
    return since, table


def _num(text: str) -> bool:
    try:
        Decimal(text)
        return True
    except ArithmeticError:
        return False


def _dumps(table: dict[str, Any]) -> str:
    return json.dumps(table, default=str, sort_keys=True)


def _loads(text: str) -> dict[str, Any]:
    table: dict[str, Any] = json.loads(text)
    from .price_files import PRICE_KEYS

    def dec(t: dict[str, Any]) -> dict[str, Any]:
        return {k: (Decimal(v) if k in PRICE_KEYS else [dec(x) for x in v] if k == "tiers" else v)
                for k, v in t.items()}
    return dec(table)


class PriceOverrides:
    """The overrides in one ledger store."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def put(self, provider: str, model: str, body: Any, *, actor: str = "python") -> dict[str, Any]:
        """Store the override (replacing one with the same ``since``); one audit row by ``actor``
        (an admin key id, or "cli") in the same transaction."""
        from .server import audit
        since, table = check_entry(provider, model, body)
        now = datetime.now(timezone.utc)
        key = (provider, model, since.isoformat())
        with self.store.transaction() as tx:
            old = tx.execute(f"SELECT entry FROM {TABLE} WHERE provider = ? AND model = ? AND since = ?",
                             key).fetchone()
            tx.execute(f"DELETE FROM {TABLE} WHERE provider = ? AND model = ? AND since = ?", key)
            tx.execute(f"INSERT INTO {TABLE} (provider, model, since, entry, set_at) VALUES (?, ?, ?, ?, ?)",
                       (*key, _dumps(table), now.isoformat()))
            saved = {"provider": provider, "model": model, "since": since.isoformat(), **json.loads(_dumps(table))}
            before = None if old is None else {**saved, **json.loads(old[0])} | {"since": since.isoformat()}
            audit.write(tx, actor, "prices.put", f"price:{provider}/{model}@{since.isoformat()}", before, saved, now)
        return saved

    def rows(self, provider: str | None = None, model: str | None = None) -> list[dict[str, Any]]:
        sql = f"SELECT provider, model, since, entry, set_at FROM {TABLE}"
        params: tuple[Any, ...] = ()
        if provider is not None:
            sql, params = sql + " WHERE provider = ? AND model = ?", (provider, model)
        with self.store.transaction() as tx:
            found = tx.execute(sql + " ORDER BY provider, model, since", params).fetchall()
        return [{"provider": p, "model": m, "since": s, "set_at": at, **json.loads(e)}
                for p, m, s, e, at in found]

    def prices(self) -> dict[tuple[str, str], tuple[Any, ...]]:
        """``{(provider, model): Price entries, oldest since first}`` for `PriceBook.overlaid`."""
        from .pricing import _build_price
        out: dict[tuple[str, str], list[Any]] = {}
        for row in self.rows():
            table = {k: v for k, v in row.items() if k not in ("provider", "model", "set_at")}
            table = _loads(json.dumps(table))
            table["since"] = date.fromisoformat(table["since"])
            p, m = row["provider"], row["model"]
            out.setdefault((p, m), []).append(
                _build_price(p, m, table, LABEL, f"{p}/{m} since {row['since']}", "override", None))
        return {k: tuple(v) for k, v in out.items()}


class OverrideCache:
    """A Client's view: the base book with the overrides laid over it, re-read at most
    every ``refresh`` seconds (`expire` forces the next read)."""

    def __init__(self, refresh: float = REFRESH_SECONDS,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.refresh = refresh
        self._monotonic = monotonic
        self._at: float | None = None
        self._prices: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._book: Any = None
        self._base: Any = None
        self._lock = threading.Lock()

    def stale(self) -> bool:
        """The next `over` reads the database (async callers do that off the loop first)."""
        return self._at is None or self._monotonic() - self._at >= self.refresh

    def over(self, base: Any, store: Any) -> Any:
        now = self._monotonic()
        with self._lock:
            if self._at is None or now - self._at >= self.refresh:
                prices = PriceOverrides(store).prices()
                if prices != self._prices or self._book is None:
                    self._book = None
                self._prices, self._at = prices, now
            if self._book is None or self._base is not base:
                self._base = base
                self._book = base.overlaid(self._prices) if self._prices else base
            return self._book

    def expire(self) -> None:
        with self._lock:
            self._at = None
