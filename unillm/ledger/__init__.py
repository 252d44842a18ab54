"""The ledger: every call recorded durably, summarized, exported.

::

    from unillm.ledger import Ledger, open_store
    ledger = Ledger(open_store("sqlite:///tmp/ledger.db"), pricebook, {"service": "bot"})
    ledger.record(provider="openai", model="gpt-4o", input_tokens=1200, output_tokens=300)
    ledger.summary(by=["model", "day"], since="7d")

Modules: `records` (CallRecord: the ledger's field table), `fields` (what another system
may report: `Ledger.record`, ``POST /v1/usage``, `track`), `store` (protocol, `open_store`),
`reads` (the SQL stores' reads), `sqlite` (default store), `postgres` (shared store),
`migrations`, `rows` (record <-> SQL row, codecs by field type), `money` (exact sums),
`query` (dimensions and filters), `summary`, `export`, `facade` (`Ledger`).
Nothing here opens a database at import.
"""

from __future__ import annotations

from .facade import Ledger, WhatIf
from .records import STATUSES, CallRecord, new_id
from .store import Dialect, LedgerStore, NullStore, Transaction
from .stores import default_path, open_store

__all__ = ["CallRecord", "Dialect", "Ledger", "LedgerStore", "NullStore", "STATUSES",
           "Transaction", "WhatIf", "default_path", "new_id", "open_store"]
