"""What the response cache did, read from the ledger: every row's ``cache_status``.

`status_counts` is what ``unillm cache stats`` prints under "skipped": how many
calls were answered from the cache, looked it up and missed, stored their
answer, or skipped it, and why (``skipped:sampled``, ``skipped:disabled`` …).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["skip_reasons", "status_counts"]


def status_counts(store: Any, *, since: Any = None, until: Any = None) -> dict[str, int]:
    """Ledger rows by ``cache_status`` (rows without one, from calls with no cache, left out)."""
    rows = store.summary(by=["cache_status"], since=since, until=until)
    counts = {str(r["cache_status"]): int(r["calls"]) for r in rows if r.get("cache_status")}
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def skip_reasons(counts: Mapping[str, int]) -> dict[str, int]:
    """``{"sampled": 12, "disabled": 3}`` from `status_counts`'s ``skipped:<reason>`` entries."""
    return {k.split(":", 1)[1]: n for k, n in counts.items() if k.startswith("skipped:")}
