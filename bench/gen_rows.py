"""Fill a ledger with N synthetic calls, fast (rows built directly, executemany).

    python bench/gen_rows.py /tmp/ledger-1m.db --rows 1000000 [--days 90] [--seed 1]

Rows look like a real mixed workload: several providers and models, 3% errors,
10% cache hits, a few budget denials, tags (user, project), nested sections,
latencies around a second, and exact decimal costs.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unillm.ledger import money  # noqa: E402
from unillm.ledger.records import new_id  # noqa: E402
from unillm.ledger.records import CallRecord  # noqa: E402
from unillm.ledger.rows import COLUMNS, INSERT_SQL, iso, to_row  # noqa: E402
from unillm.ledger.sqlite import SQLiteStore  # noqa: E402

#: (provider, model, input $/Mtok, output $/Mtok)
MODELS = [
    ("openai", "gpt-4o", "2.50", "10.00"),
    ("openai", "gpt-4o-mini", "0.15", "0.60"),
    ("anthropic", "claude-sonnet-4-5", "3.00", "15.00"),
    ("anthropic", "claude-haiku-4-5", "1.00", "5.00"),
    ("google", "gemini-2.5-flash", "0.30", "2.50"),
    ("cohere", "command-r-plus", "2.50", "10.00"),
]
SECTIONS = [None, "agent:research", "agent:research/llm:query", "agent:support", "batch:nightly"]
_M = Decimal(1_000_000)
#: every column's value for a record that sets nothing (NOT NULL columns included)
_EMPTY = dict(zip(COLUMNS, to_row(CallRecord(provider="", model=""))))


def row(rng: random.Random, start: datetime, days: int) -> tuple:
    """One synthetic ledger row, in `COLUMNS` order (a column not set here takes an empty
    record's value), so a migration that adds a column does not break the generator."""
    provider, model, pin, pout = rng.choice(MODELS)
    at = start + timedelta(seconds=rng.random() * days * 86400)
    r = rng.random()
    status = "error" if r < 0.03 else "cache_hit" if r < 0.13 else \
        "budget_denied" if r < 0.135 else "ok"
    tin, tout = (rng.randint(10, 5000), rng.randint(1, 1500)) if status == "ok" else (0, 0)
    in_usd = Decimal(tin) * Decimal(pin) / _M
    out_usd = Decimal(tout) * Decimal(pout) / _M
    total = in_usd + out_usd if status in ("ok", "cache_hit") else None
    tn, ta = money.split(money.normalize(total))
    saved = Decimal(rng.randint(10, 3000)) * Decimal(pin) / _M if status == "cache_hit" else Decimal(0)
    sn, sa = money.split(money.normalize(saved))
    tags = json.dumps({"user": f"u{rng.randint(1, 200)}",
                       "project": rng.choice(["bot", "search", "etl"])}, sort_keys=True,
                      separators=(",", ":"))
    values = {
        "id": new_id(int(at.timestamp() * 1000)), "started_at": iso(at), "ended_at": iso(at),
        "latency_ms": round(rng.lognormvariate(6.5, 0.6), 3) if status != "budget_denied" else None,
        "provider": provider, "requested_model": model, "model": model, "status": status,
        "error_class": "RateLimitError" if status == "error" else None,
        "input_tokens": tin, "output_tokens": tout, "usage_source": "provider",
        "input_usd": format(in_usd, "f"), "cache_read_usd": "0", "cache_write_usd": "0",
        "output_usd": format(out_usd, "f"), "other_usd": "0",
        "total_nano": tn, "total_atto": ta, "saved_nano": sn, "saved_atto": sa,
        "saved_reason": "cache" if saved else None, "price_version": "bench", "tags": tags,
        "section": rng.choice(SECTIONS), "stream": 0,
    }
    return tuple(values.get(c, _EMPTY[c]) for c in COLUMNS)


def generate(path: str, rows: int, days: int = 90, seed: int = 1, batch: int = 50_000) -> float:
    """Append ``rows`` synthetic rows to the ledger at ``path``; returns seconds taken."""
    rng = random.Random(seed)
    start = datetime.now(timezone.utc) - timedelta(days=days)
    store = SQLiteStore(path)
    t0 = time.perf_counter()
    conn = store._conn
    done = 0
    while done < rows:
        n = min(batch, rows - done)
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT_SQL, [row(rng, start, days) for _ in range(n)])
        conn.execute("COMMIT")
        done += n
    store.close()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path")
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=90)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    secs = generate(args.path, args.rows, args.days, args.seed)
    print(f"wrote {args.rows:,} rows to {args.path} in {secs:.1f} s")


if __name__ == "__main__":
    main()
