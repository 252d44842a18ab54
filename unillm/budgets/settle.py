"""A ledger row and its call's budget hold, committed together.

`commit` is step 10 of every call (`Client._record`) and of every metered request
(`unillm.observe`): the row is written and the hold becomes spend (``ok``, ``unpriced``,
``partial``), is counted at its worst case (``unknown``: sent, then cut, so the vendor may
bill it), or is released (nothing was spent), in one transaction; durable when it returns.
The alert events it crosses are emitted after the commit.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from .. import errors


def commit(ledger: Any, budgets: Any, rec: Any, hold: Any, cost_usd: Decimal | None, tokens: int, *,
           charge: Any = None) -> None:
    """``charge``: tags whose budgets a row with no hold is charged to (spend that happened)."""
    events: list[dict[str, Any]] = []
    try:
        if hold is None and charge is not None and rec.status in ("ok", "unpriced", "partial"):
            with ledger.store.transaction() as tx:
                events = budgets.charge(tx, charge, cost_usd, tokens)
                tx.record(rec)
        elif hold is None:
            ledger.add(rec)
        else:
            with ledger.store.transaction() as tx:
                if rec.status in ("ok", "unpriced", "partial"):
                    events = budgets.settle(tx, hold, cost_usd, tokens)
                elif rec.status == "unknown":
                    events = budgets.settle(tx, hold, hold.usd, hold.tokens)
                else:
                    budgets.release(tx, hold)
                tx.record(rec)
    except errors.UnillmError:
        raise
    except Exception as exc:
        from ..ledger.urls import redact
        where = redact(getattr(ledger.store, "url", "") or "")
        raise errors.LedgerError(f"could not record the call in the ledger {where}: {exc}".replace(
            "ledger :", "ledger:")) from exc
    for event in events:
        budgets.alerts.emit(event)
