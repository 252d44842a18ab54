"""One table of ledger fields: `CallRecord` drives the columns and the row codec, and
`fields.REPORTED` drives `Ledger.record`'s keywords, the ``POST /v1/usage`` body and what
`track` reads from a response. Each list that used to be kept by hand is checked here
against the table, and the migrated table (SQLite and PostgreSQL) against the columns."""

from __future__ import annotations

import inspect
import typing
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.test_server_support import make_served, upstream  # noqa: F401
from unillm.ledger import Ledger, rows
from unillm.ledger.fields import REPORTED
from unillm.ledger.records import FIELDS
from unillm.ledger.rows import COLUMNS, TABLE
from unillm.server.usage import UsageIn
from unillm.types import Usage

from .servers import any_store, pg_url, postgres_server, postgres_url  # noqa: F401


def _columns(store) -> list[str]:
    sql = (f"SELECT name FROM pragma_table_info('{TABLE}') ORDER BY cid"
           if store.dialect.name == "sqlite" else
           "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
           "ORDER BY ordinal_position")
    with store.transaction() as tx:
        return [row[0] for row in tx.execute(sql, () if store.dialect.name == "sqlite" else (TABLE,))]


def test_the_migrated_table_is_exactly_the_record_fields(any_store) -> None:
    """A field added to `CallRecord` without its migration (or a migration without its
    field) fails here, on both backends, not at the first INSERT in production."""
    columns = _columns(any_store)  # in migration order: compared as a set, without repeats
    assert len(columns) == len(set(columns))
    assert set(columns) == {"seq", *COLUMNS}


def test_every_record_field_is_stored_by_its_types_codec() -> None:
    """The codec follows from `CallRecord`'s field types: no per-field list to forget."""
    for name in FIELDS:
        kind = rows._TYPES[name]
        assert kind in rows.CODECS or kind in rows.PLAIN or typing.get_origin(kind) is typing.Literal, name
    assert rows._codec("retried") == rows.CODECS[bool] and rows._codec("units") == rows.CODECS[dict[str, Decimal]]


def test_every_reported_field_lands_in_a_record_field() -> None:
    assert {f.column for f in REPORTED} <= set(FIELDS)
    assert all(f.part_of in {g.name for g in REPORTED} for f in REPORTED if f.part_of)


def test_record_takes_exactly_the_reported_fields_with_their_defaults() -> None:
    params = list(inspect.signature(Ledger.record).parameters.values())[1:]
    assert [p.name for p in params] == [f.name for f in REPORTED]
    for p, f in zip(params, REPORTED):
        assert p.kind is p.KEYWORD_ONLY
        assert (p.default is p.empty) is f.required, f.name
        if not f.required:
            assert p.default == f.default, f.name


def test_the_ingest_body_is_the_reported_fields_plus_user_and_project() -> None:
    body = UsageIn.model_fields
    assert list(body) == ["user", "project", *(f.body_name for f in REPORTED)]
    for f in REPORTED:
        assert body[f.body_name].is_required() is f.required, f.name


def test_track_reads_every_usage_bucket_and_its_source() -> None:
    """A bucket added to `Usage` without a reportable field would be dropped by track() and
    refused by record(); ``sources`` and ``problem`` describe buckets, they are not ones."""
    buckets = set(Usage.model_fields) - {"sources", "problem"}
    assert {f.usage for f in REPORTED if f.usage} == buckets


# ── what the table changed at the boundary ───────────────────────────────────

@pytest.fixture
def served(upstream, tmp_path: Path):  # noqa: F811
    yield from make_served(upstream, tmp_path)


def _post(s, body):
    return httpx.post(s.url + "/v1/usage", json=body, headers={"authorization": f"Bearer {s.admin}"})


REPORT = {"provider": "openai", "model": "gpt-4o", "input_tokens": 10, "output_tokens": 5}


def test_ingest_accepts_every_field_record_does(served) -> None:
    """``usage_source`` was a keyword of `Ledger.record` that the ingest body refused."""
    r = _post(served, {**REPORT, "usage_source": "estimate"})
    assert r.status_code == 201, r.text
    rec = next(x for x in served.client.ledger.records(since="1d") if x.id == r.json()["id"])
    assert rec.usage_source == "estimate"


@pytest.mark.parametrize(("patch", "field"), [
    ({"usage_source": "guess"}, "usage_source"),
    ({"status": "fine"}, "status"),
    ({"requested_model": ""}, "requested_model"),
    ({"latency_ms": "Infinity"}, "latency_ms"),
])
def test_ingest_bounds_are_the_tables(served, patch, field) -> None:
    r = _post(served, {**REPORT, **patch})
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["error"]["errors"]] == [field]
