"""Schema changes: an ordered list of named migrations, each applied in a transaction.

After simonw/llm's ``migrations.py``, made transactional and safe for several
processes opening the same fresh database at once: every migration runs inside
``BEGIN IMMEDIATE`` (the write lock is taken before the applied set is read),
so a second process waits, then sees the migration done and skips it. The
names applied are kept in ``unillm_migrations``.

Add a migration by appending to `MIGRATIONS`; never edit or reorder one that
has shipped. Budgets (a later issue) add their tables here the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone

from .rows import TABLE
from .store import Dialect, Transaction

MIGRATIONS_TABLE = "unillm_migrations"


@dataclass(frozen=True)
class Migration:
    name: str
    apply: Callable[[Transaction, Dialect], None]


def _m001_calls(tx: Transaction, d: Dialect) -> None:
    """The first schema: one row per call."""
    tokens = ", ".join(f"{c} INTEGER NOT NULL DEFAULT 0" for c in (
        "input_tokens", "cache_read_tokens", "cache_write_tokens", "output_tokens",
        "reasoning_tokens"))
    items = ", ".join(f"{c} TEXT" for c in (
        "input_usd", "cache_read_usd", "cache_write_usd", "output_usd", "other_usd"))
    tx.execute(f"""
        CREATE TABLE {TABLE} (
            seq {d.serial_pk},
            id TEXT NOT NULL UNIQUE,
            started_at TEXT NOT NULL,
            ended_at TEXT,
            latency_ms {d.float_type},
            ttft_ms {d.float_type},
            provider TEXT NOT NULL,
            requested_model TEXT,
            model TEXT NOT NULL,
            rule TEXT,
            shadow_rule TEXT,
            fallback_from TEXT,
            status TEXT NOT NULL,
            error_class TEXT,
            {tokens},
            usage_source TEXT,
            {items},
            total_nano BIGINT,
            total_atto BIGINT,
            saved_nano BIGINT NOT NULL DEFAULT 0,
            saved_atto BIGINT NOT NULL DEFAULT 0,
            saved_reason TEXT,
            price_version TEXT,
            fingerprint TEXT,
            tags TEXT NOT NULL DEFAULT '{{}}',
            section TEXT,
            stream INTEGER NOT NULL DEFAULT 0
        )""")


def _m002_content(tx: Transaction, d: Dialect) -> None:
    """Prompt and response text, written only when ``log_content = true``."""
    tx.execute(f"ALTER TABLE {TABLE} ADD COLUMN prompt TEXT")
    tx.execute(f"ALTER TABLE {TABLE} ADD COLUMN response TEXT")


def _m003_indexes(tx: Transaction, d: Dialect) -> None:
    """Time-range filters (every summary, export and what-if) and request lookups."""
    tx.execute(f"CREATE INDEX {TABLE}_started_at ON {TABLE} (started_at)")
    tx.execute(f"CREATE INDEX {TABLE}_fingerprint ON {TABLE} (fingerprint)")


def _m004_budgets(tx: Transaction, d: Dialect) -> None:
    """Budget counters, in-flight holds (reservations) and fired alerts.

    Money is exact decimal text; each (budget, scope, period) row is locked while
    a call is admitted, so concurrent callers cannot overshoot. A hold whose lease
    has expired belonged to a crashed process and is reclaimed.
    """
    tx.execute("""
        CREATE TABLE unillm_budget_spend (
            budget TEXT NOT NULL, scope TEXT NOT NULL, period TEXT NOT NULL,
            spent_usd TEXT NOT NULL DEFAULT '0', tokens BIGINT NOT NULL DEFAULT 0,
            requests BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (budget, scope, period))""")
    tx.execute("""
        CREATE TABLE unillm_budget_holds (
            id TEXT NOT NULL, budget TEXT NOT NULL, scope TEXT NOT NULL, period TEXT NOT NULL,
            amount_usd TEXT NOT NULL, tokens BIGINT NOT NULL, expires_at TEXT NOT NULL,
            PRIMARY KEY (id, budget, scope))""")
    tx.execute("CREATE INDEX unillm_budget_holds_key ON unillm_budget_holds (budget, scope, period)")
    tx.execute("""
        CREATE TABLE unillm_budget_alerts (
            budget TEXT NOT NULL, scope TEXT NOT NULL, period TEXT NOT NULL,
            threshold TEXT NOT NULL, fired_at TEXT NOT NULL,
            PRIMARY KEY (budget, scope, period, threshold))""")


def _m005_gateway_keys(tx: Transaction, d: Dialect) -> None:
    """``unillm serve`` API keys: only a SHA-256 of each key, plus its tenancy and limits."""
    tx.execute("""
        CREATE TABLE unillm_keys (
            id TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, prefix TEXT NOT NULL,
            user_name TEXT, project TEXT, admin INTEGER NOT NULL DEFAULT 0,
            budget_usd TEXT, period TEXT, rpm INTEGER, tpm INTEGER,
            created_at TEXT NOT NULL, revoked_at TEXT, note TEXT)""")


def _m006_cache_write_1h(tx: Transaction, d: Dialect) -> None:
    """Anthropic's 1-hour cache writes, kept apart so re-pricing (what-if) stays exact."""
    tx.execute(f"ALTER TABLE {TABLE} ADD COLUMN cache_write_1h_tokens INTEGER NOT NULL DEFAULT 0")


def _m007_round_two(tx: Transaction, d: Dialect) -> None:
    """Metered units, cache status, dropped parameters, one row per HTTP attempt, the model
    sent, the deployment, and per-bucket usage sources (see `CallRecord`)."""
    for column in ("units TEXT NOT NULL DEFAULT '{}'", "cache_status TEXT", "dropped_params TEXT",
                   "attempt INTEGER NOT NULL DEFAULT 1", "retried INTEGER NOT NULL DEFAULT 0",
                   "sent_model TEXT", "deployment TEXT", "usage_sources TEXT NOT NULL DEFAULT '{}'"):
        tx.execute(f"ALTER TABLE {TABLE} ADD COLUMN {column}")


def _m008_ratelimits(tx: Transaction, d: Dialect) -> None:
    """Rate limits and per-key concurrency shared by every gateway process and host
    (`unillm.server.ratelimit`), and 64-bit token counts everywhere.

    ``unillm_rate_keys``: one row per limited key, locked while a request is admitted;
    ``unillm_rate_events``: the requests (``kind = 'r'``) and tokens (``'t'``) of the last
    window; ``unillm_rate_leases``: requests in flight, each until it ends or its lease
    (renewed while it runs) lapses. Times are Unix seconds.

    SQLite's INTEGER is already 64-bit; PostgreSQL's is 32-bit, which cannot hold a call
    of 10^10 tokens (the per-call bound), so the token columns become BIGINT there.
    """
    tx.execute("CREATE TABLE unillm_rate_keys (key_id TEXT PRIMARY KEY)")
    tx.execute(f"CREATE TABLE unillm_rate_events (key_id TEXT NOT NULL, kind TEXT NOT NULL, "
               f"at {d.float_type} NOT NULL, amount BIGINT NOT NULL DEFAULT 0)")
    tx.execute("CREATE INDEX unillm_rate_events_key ON unillm_rate_events (key_id, kind, at)")
    tx.execute(f"CREATE TABLE unillm_rate_leases (id TEXT PRIMARY KEY, key_id TEXT NOT NULL, "
               f"expires_at {d.float_type} NOT NULL)")
    tx.execute("CREATE INDEX unillm_rate_leases_key ON unillm_rate_leases (key_id)")
    if d.name == "postgresql":
        for column in ("input_tokens", "cache_read_tokens", "cache_write_tokens",
                       "cache_write_1h_tokens", "output_tokens", "reasoning_tokens"):
            tx.execute(f"ALTER TABLE {TABLE} ALTER COLUMN {column} TYPE BIGINT")


def _m009_calls(tx: Transaction, d: Dialect) -> None:
    """``call_id``: the rows of one call (each HTTP attempt, each fallback) share it."""
    tx.execute(f"ALTER TABLE {TABLE} ADD COLUMN call_id TEXT")
    tx.execute(f"CREATE INDEX {TABLE}_call_id ON {TABLE} (call_id)")


def _m010_webhook_outbox(tx: Transaction, d: Dialect) -> None:
    """Webhook deliveries (`unillm.webhooks`): one row per event and endpoint, kept until it
    is delivered (or given up), so a restart resumes what was not. ``hook`` names the
    endpoint by a hash of its URL (neither the URL nor its secret is stored); ``id`` is the
    idempotency id every attempt carries. Times are Unix seconds."""
    f = d.float_type
    tx.execute(f"""
        CREATE TABLE unillm_webhook_outbox (
            id TEXT PRIMARY KEY, hook TEXT NOT NULL, event TEXT NOT NULL, body TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0,
            created_at {f} NOT NULL, next_at {f} NOT NULL, lease_until {f}, done_at {f},
            last_error TEXT)""")
    tx.execute("CREATE INDEX unillm_webhook_outbox_due ON unillm_webhook_outbox (state, hook, next_at)")


def _m011_embeddings(tx: Transaction, d: Dialect) -> None:
    """``kind`` (chat or embed) and ``inputs``: how many texts one embeddings request carried."""
    tx.execute(f"ALTER TABLE {TABLE} ADD COLUMN kind TEXT")
    tx.execute(f"ALTER TABLE {TABLE} ADD COLUMN inputs INTEGER")


def _m012_issue22(tx: Transaction, d: Dialect) -> None:
    """Sealed provider keys (`unillm.sealed`: Fernet ciphertext only), gateway-key expiry,
    allowed models and rotation (the previous hash, valid until ``old_until``), and price
    overrides set over ``/admin/prices`` (one pricing.toml entry as JSON, from ``since``)."""
    tx.execute("CREATE TABLE unillm_provider_keys (provider TEXT PRIMARY KEY, token TEXT NOT NULL, "
               "set_at TEXT NOT NULL)")
    for column in ("expires_at TEXT", "models TEXT", "old_hash TEXT", "old_until TEXT"):
        tx.execute(f"ALTER TABLE unillm_keys ADD COLUMN {column}")
    tx.execute("CREATE INDEX unillm_keys_old_hash ON unillm_keys (old_hash)")
    tx.execute("""
        CREATE TABLE unillm_price_overrides (
            provider TEXT NOT NULL, model TEXT NOT NULL, since TEXT NOT NULL, entry TEXT NOT NULL,
            set_at TEXT NOT NULL, PRIMARY KEY (provider, model, since))""")


def _m013_admin(tx: Transaction, d: Dialect) -> None:
    """The gateway's admin API (`unillm.server.admin`, `unillm.server.audit`).

    ``unillm_audit``: one row per admin change (who: key id; what: action, object, before and
    after as JSON with secrets redacted; when), append-only: a trigger refuses UPDATE and
    DELETE on both backends. ``unillm_admin_objects``: budgets and rules created over HTTP,
    each its validated input as JSON, read by every gateway process."""
    tx.execute(f"""
        CREATE TABLE unillm_audit (
            seq {d.serial_pk}, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
            object TEXT NOT NULL, before TEXT, after TEXT)""")
    if d.name == "postgresql":
        tx.execute("CREATE OR REPLACE FUNCTION unillm_audit_append_only() RETURNS trigger AS "
                   "$$ BEGIN RAISE EXCEPTION 'unillm_audit is append-only'; END $$ LANGUAGE plpgsql")
        tx.execute("CREATE TRIGGER unillm_audit_append_only BEFORE UPDATE OR DELETE ON unillm_audit "
                   "FOR EACH ROW EXECUTE FUNCTION unillm_audit_append_only()")
    else:
        for op in ("UPDATE", "DELETE"):
            tx.execute(f"CREATE TRIGGER unillm_audit_no_{op.lower()} BEFORE {op} ON unillm_audit "
                       "BEGIN SELECT RAISE(ABORT, 'unillm_audit is append-only'); END")
    tx.execute("""
        CREATE TABLE unillm_admin_objects (
            kind TEXT NOT NULL, name TEXT NOT NULL, spec TEXT NOT NULL, updated_at TEXT NOT NULL,
            PRIMARY KEY (kind, name))""")


def _m014_route_state(tx: Transaction, d: Dialect) -> None:
    """Deployment health, in-flight and per-minute usage (`unillm.routing.state`), shared by
    every process routing through this database: one JSON row per deployment, locked while
    a deployment is picked."""
    tx.execute("CREATE TABLE unillm_route_state (deployment TEXT PRIMARY KEY, state TEXT NOT NULL)")


def _m015_budget_totals(tx: Transaction, d: Dialect) -> None:
    """Budgets in a fixed number of statements per call (`unillm.budgets.store`).

    ``unillm_budget_totals``: one counter per (scope, window), shared by every budget with that
    scope and period, money as exact ``(nano, atto)`` integers so SQL adds it;
    ``unillm_budget_bases``: each budget instance's counter value when it first saw it;
    ``unillm_budget_flights``: one row per call in flight, its hold and write-ahead description.

    From 0014: the per-budget spend rows stay, read once per budget instance as the start of its
    base (a budget neither resets nor doubles). Holds still in the old table belonged to calls
    whose process is gone (a process does not outlive an upgrade of its schema): each is counted
    at its worst case in its budget's spend, and its ``in_flight`` row becomes ``unknown``."""
    pairs = "spent_nano BIGINT NOT NULL DEFAULT 0, spent_atto BIGINT NOT NULL DEFAULT 0"
    counts = "tokens BIGINT NOT NULL DEFAULT 0, requests BIGINT NOT NULL DEFAULT 0"
    tx.execute(f"""
        CREATE TABLE unillm_budget_totals (
            scope TEXT NOT NULL, period TEXT NOT NULL, {pairs}, {counts},
            held_nano BIGINT NOT NULL DEFAULT 0, held_atto BIGINT NOT NULL DEFAULT 0,
            held_tokens BIGINT NOT NULL DEFAULT 0, held_requests BIGINT NOT NULL DEFAULT 0,
            PRIMARY KEY (scope, period))""")
    tx.execute(f"""
        CREATE TABLE unillm_budget_bases (
            budget TEXT NOT NULL, scope TEXT NOT NULL, period TEXT NOT NULL, {pairs}, {counts},
            PRIMARY KEY (budget, scope, period))""")
    tx.execute(f"""
        CREATE TABLE unillm_budget_flights (
            id TEXT PRIMARY KEY, counters TEXT NOT NULL, amount_usd TEXT NOT NULL, tokens BIGINT NOT NULL,
            expires_at {d.float_type} NOT NULL, call TEXT)""")
    tx.execute("CREATE INDEX unillm_budget_flights_expiry ON unillm_budget_flights (expires_at)")
    _old_holds_lapse(tx)


def _m016_budget_flights(tx: Transaction, d: Dialect) -> None:
    """SQLite: ``unillm_budget_flights`` as one b-tree keyed by the flight id (``WITHOUT ROWID``).
    Every budgeted call inserts and deletes one flight row; a rowid table kept the row and
    its primary key in two trees, so each of the call's two commits wrote one page more.
    The rows carry over. PostgreSQL is unchanged (a heap and its key's index either way)."""
    if d.name != "sqlite":
        return
    tx.execute("""
        CREATE TABLE unillm_budget_flights_0016 (
            id TEXT PRIMARY KEY, counters TEXT NOT NULL, amount_usd TEXT NOT NULL, tokens BIGINT NOT NULL,
            expires_at REAL NOT NULL, call TEXT) WITHOUT ROWID""")
    tx.execute("INSERT INTO unillm_budget_flights_0016 (id, counters, amount_usd, tokens, expires_at, call) "
               "SELECT id, counters, amount_usd, tokens, expires_at, call FROM unillm_budget_flights")
    tx.execute("DROP TABLE unillm_budget_flights")
    tx.execute("ALTER TABLE unillm_budget_flights_0016 RENAME TO unillm_budget_flights")
    tx.execute("CREATE INDEX unillm_budget_flights_expiry ON unillm_budget_flights (expires_at)")


def _m017_budget_flights_unindexed(tx: Transaction, d: Dialect) -> None:
    """``unillm_budget_flights`` without its index on ``expires_at``. Every budgeted call
    inserts and deletes one flight row, so the index cost each of its two commits one page
    more (SQLite) and every lease renewal an index update; the table holds only the calls in
    flight, and the look for lapsed leases that read it is made at most once a second per
    process on the quick path (`unillm.budgets.manager`)."""
    tx.execute("DROP INDEX IF EXISTS unillm_budget_flights_expiry")


def _m018_calls_unindexed(tx: Transaction, d: Dialect) -> None:
    """``ledger_calls`` without its indexes on ``call_id`` and ``fingerprint``: nothing unillm
    reads looks rows up by either, and each cost every row written one index page more (a
    call id is random, so a page of its own in every commit): an INSERT + commit on SQLite
    went from about 62 to 45 µs. The indexes kept serve what is read: ``id`` (unique) and
    ``started_at`` (every time range). An index a user adds for their own queries is theirs:
    no migration touches it."""
    tx.execute(f"DROP INDEX IF EXISTS {TABLE}_call_id")
    tx.execute(f"DROP INDEX IF EXISTS {TABLE}_fingerprint")


def _old_holds_lapse(tx: Transaction) -> None:
    """0015: the holds left in ``unillm_budget_holds`` counted at their worst case (see above)."""
    from decimal import Decimal

    from .money import split
    holds = tx.execute("SELECT id, budget, scope, period, amount_usd, tokens FROM unillm_budget_holds").fetchall()
    worst: dict[str, Decimal] = {}
    for hold_id, budget, scope, period, amount, tokens in holds:
        key = (budget, scope, period)
        spent = tx.execute("SELECT spent_usd FROM unillm_budget_spend WHERE budget = ? AND scope = ? AND period = ?",
                           key).fetchone()
        total = (Decimal(spent[0]) if spent else Decimal(0)) + Decimal(amount)
        tx.execute("INSERT INTO unillm_budget_spend (budget, scope, period, spent_usd, tokens, requests) "
                   "VALUES (?, ?, ?, ?, ?, 1) ON CONFLICT (budget, scope, period) DO UPDATE SET "
                   "spent_usd = excluded.spent_usd, tokens = unillm_budget_spend.tokens + excluded.tokens, "
                   "requests = unillm_budget_spend.requests + 1", (*key, format(total, "f"), int(tokens)))
        worst[hold_id] = Decimal(amount)
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    for hold_id, amount in worst.items():
        nano, atto = split(amount)
        tx.execute(f"UPDATE {TABLE} SET status = 'unknown', total_nano = ?, total_atto = ?, ended_at = ?, "
                   "error_class = 'LeaseExpired' WHERE id = ? AND status = 'in_flight'", (nano, atto, now, hold_id))
    tx.execute("DELETE FROM unillm_budget_holds")


MIGRATIONS: list[Migration] = [
    Migration("0001_calls", _m001_calls),
    Migration("0002_content", _m002_content),
    Migration("0003_indexes", _m003_indexes),
    Migration("0004_budgets", _m004_budgets),
    Migration("0005_gateway_keys", _m005_gateway_keys),
    Migration("0006_cache_write_1h", _m006_cache_write_1h),
    Migration("0007_round_two", _m007_round_two),
    Migration("0008_ratelimits", _m008_ratelimits),
    Migration("0009_calls", _m009_calls),
    Migration("0010_webhook_outbox", _m010_webhook_outbox),
    Migration("0011_embeddings", _m011_embeddings),
    Migration("0012_issue22", _m012_issue22),
    Migration("0013_admin", _m013_admin),
    Migration("0014_route_state", _m014_route_state),
    Migration("0015_budget_totals", _m015_budget_totals),
    Migration("0016_budget_flights", _m016_budget_flights),
    Migration("0017_budget_flights_unindexed", _m017_budget_flights_unindexed),
    Migration("0018_calls_unindexed", _m018_calls_unindexed),
]


def applied(tx: Transaction) -> set[str]:
    """Names of the migrations already applied (creating the bookkeeping table if needed)."""
    tx.execute(f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} "
               "(name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    return {row[0] for row in tx.execute(f"SELECT name FROM {MIGRATIONS_TABLE}").fetchall()}


def migrate(begin: Callable[[], object], dialect: Dialect,
            migrations: Sequence[Migration] = MIGRATIONS) -> list[str]:
    """Apply the pending ``migrations`` in order, one write transaction each.

    ``begin`` opens a write transaction (a context manager yielding a
    `Transaction`). Returns the names this call applied.
    """
    done: list[str] = []
    for m in migrations:
        with begin() as tx:  # type: ignore[attr-defined]
            if m.name in applied(tx):
                continue
            m.apply(tx, dialect)
            tx.execute(f"INSERT INTO {MIGRATIONS_TABLE} (name, applied_at) VALUES (?, ?)",
                       (m.name, datetime.now(timezone.utc).isoformat()))
            done.append(m.name)
    return done
