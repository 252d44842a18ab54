"""A realistic ledger for looking at report.html: 30 days, ~10k calls, per-user budgets,
rule savings and cache hits (issue 15, finding 8).

    PYTHONPATH=. python -m tests.report_ledger /tmp/rep [--rows 10000] [--days 30]

writes ``/tmp/rep/unillm.toml``, its ledger, and ``/tmp/rep/report.html``. Budget slots come
from real calls through a `Client` (FakeProvider upstream); the bulk rows are synthetic
(bench/gen_rows.py), with some calls swapped by rules that record what they saved.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from bench.gen_rows import row
from unillm import Client
from unillm.ledger import money
from unillm.ledger.rows import COLUMNS, INSERT_SQL
from unillm.ledger.sqlite import SQLiteStore
from unillm.testing import FakeProvider, Reply

USERS = ("ann", "bo", "chen", "dora", "eve", "farid")
RULES = ("cheap-after-hours", "short-prompts-to-mini", "long-context-to-flash-with-a-long-rule-name")


def write_config(root: Path, fake: FakeProvider) -> Path:
    at = root.as_posix().lstrip("/")
    table = fake.providers("openai")["openai"]
    lines = [f'ledger = "sqlite:///{at}/ledger.db"', 'cache = "off"', "",
             "[providers.openai]", *(f"{k} = {json.dumps(v)}" for k, v in table.items()),
             "max_retries = 0", "",
             "[[budgets]]", 'name = "per user monthly"', 'scope = { user = "*" }',
             'period = "monthly"', "limit_usd = 5", "",
             "[[budgets]]", 'name = "support-bot monthly"', 'scope = { project = "bot" }',
             'period = "monthly"', "limit_usd = 100", "",
             "[[budgets]]", 'name = "all spend"', 'period = "monthly"', "limit_usd = 500", ""]
    path = root / "unillm.toml"
    path.write_text("\n".join(lines))
    return path


_FILL = {"units": "{}", "usage_sources": "{}", "attempt": 1, "retried": 0}  # newer than gen_rows


def _row(rng: random.Random, start: datetime, days: int, rules: bool) -> tuple:
    values = dict(zip(COLUMNS, row(rng, start, days)))
    values.update({k: v for k, v in _FILL.items() if k in values and values[k] is None})
    if rules and values["status"] == "ok":
        saved = Decimal(rng.randint(100, 40000)) / Decimal(10**8)
        values["saved_nano"], values["saved_atto"] = money.split(money.normalize(saved))
        values["saved_reason"], values["rule"] = "rule", rng.choice(RULES)
    tags = json.loads(values["tags"])
    tags["user"] = rng.choice(USERS) if rng.random() < 0.5 else tags["user"]
    values["tags"] = json.dumps(tags, sort_keys=True, separators=(",", ":"))
    return tuple(values[c] for c in COLUMNS)


def build(root: Path, rows: int = 10_000, days: int = 30, seed: int = 7,
          first_day_only: bool = False) -> Path:
    """The project directory's unillm.toml, with a ledger of ``rows`` calls over ``days``."""
    root.mkdir(parents=True, exist_ok=True)
    with FakeProvider() as fake:
        fake.default = Reply(text="ok", usage={"input_tokens": 20000, "output_tokens": 4000})
        cfg = write_config(root, fake)
        client = Client.from_config(cfg)
        for i, user in enumerate(USERS):
            for _ in range(i + 1):
                client.chat(model="gpt-4o", messages=[{"role": "user", "content": "hi"}],
                            max_tokens=4000, tags={"user": user, "project": "bot"})
        client.close()
    if rows:
        rng = random.Random(seed)
        span = 1 if first_day_only else days
        start = datetime.now(timezone.utc) - timedelta(days=span)
        store = SQLiteStore(root / "ledger.db")
        conn = store._conn
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT_SQL, [_row(rng, start, span, rng.random() < 0.3) for _ in range(rows)])
        conn.execute("COMMIT")
        store.close()
    return cfg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", type=Path)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--one-day", action="store_true", help="all rows within the last day")
    args = ap.parse_args()
    cfg = build(args.root, args.rows, args.days, first_day_only=args.one_day)
    from unillm.server.report import write_report
    client = Client.from_config(cfg)
    print(write_report(client, args.root / "report.html", since="30d"))


if __name__ == "__main__":
    main()
