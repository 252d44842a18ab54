"""`Ledger`: recording outside usage, validation, what-if, exports."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import datetime, timezone
from decimal import Decimal

import pytest

from unillm import errors
from unillm.ledger import CallRecord, Ledger, open_store
from unillm.types import Cost, Usage

M = Decimal(1_000_000)


class StubPriceBook:
    """Stand-in for the external price book: $/Mtok for a few models."""

    PRICES = {("openai", "gpt-4o"): (Decimal("2.5"), Decimal("10")),
              ("openai", "gpt-4o-mini"): (Decimal("0.15"), Decimal("0.6")),
              ("anthropic", "claude-haiku-4-5"): (Decimal("1"), Decimal("5"))}

    def cost(self, provider, model, usage: Usage, at=None) -> Cost:
        try:
            pin, pout = self.PRICES[provider, model]
        except KeyError:
            raise errors.MissingPriceError(provider, model) from None
        return Cost(input_usd=pin * usage.input_tokens / M,
                    cache_read_usd=pin / 10 * usage.cache_read_tokens / M,
                    output_usd=pout * usage.output_tokens / M, price_version="stub")


@pytest.fixture
def ledger(tmp_path):
    led = Ledger(open_store(f"sqlite:///{tmp_path}/f.db"), StubPriceBook(), {"service": "bot"})
    yield led
    led.close()


def test_record_prices_and_stores_outside_usage(ledger):
    rec = ledger.record(provider="openai", model="gpt-4o", input_tokens=1000, output_tokens=200,
                        cache_read_tokens=100, tags={"user": "u1"}, latency_ms=350,
                        at="2025-01-02T03:04:05Z")
    assert rec.total_usd == Decimal("0.0025") + Decimal("0.002") + Decimal("0.000025")
    assert rec.tags == {"service": "bot", "user": "u1"} and rec.price_version == "stub"
    assert rec.started_at == datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    (stored,) = list(ledger.records())
    assert stored == rec
    (row,) = ledger.summary(by=["service", "user"])
    assert row["cost_usd"] == rec.total_usd and row["calls"] == 1


@pytest.mark.parametrize("kwargs, param", [
    ({"provider": ""}, "provider"),
    ({"model": None}, "model"),
    ({"input_tokens": -1}, "input_tokens"),
    ({"output_tokens": 1.5}, "output_tokens"),
    ({"cache_read_tokens": True}, "cache_read_tokens"),
    ({"reasoning_tokens": 500}, "reasoning_tokens"),
    ({"tags": {"user": 3}}, "tags.user"),
    ({"tags": ["x"]}, "tags"),
    ({"at": "yesterday-ish"}, "at"),
    ({"latency_ms": -3}, "latency_ms"),
    ({"latency_ms": float("nan")}, "latency_ms"),
    ({"status": "great"}, "status"),
])
def test_bad_input_names_the_field(ledger, kwargs, param):
    args = {"provider": "openai", "model": "gpt-4o", "input_tokens": 1, "output_tokens": 2, **kwargs}
    with pytest.raises(errors.InvalidRequestError) as exc:
        ledger.record(**args)
    assert exc.value.param == param
    assert list(ledger.records()) == []


def test_missing_price_raises_or_records_unpriced(tmp_path):
    strict = Ledger(open_store(f"sqlite:///{tmp_path}/a.db"), StubPriceBook())
    with pytest.raises(errors.MissingPriceError):
        strict.record(provider="acme", model="x1", input_tokens=1, output_tokens=1)
    lenient = Ledger(open_store(f"sqlite:///{tmp_path}/b.db"), StubPriceBook(),
                     on_missing_price="record")
    rec = lenient.record(provider="acme", model="x1", input_tokens=1, output_tokens=1)
    assert rec.status == "unpriced" and rec.total_usd is None
    assert lenient.summary(by=["status"])[0]["unpriced"] == 1


def test_whatif_reprices_usage_on_another_model(ledger):
    ledger.record(provider="openai", model="gpt-4o", input_tokens=1_000_000, output_tokens=100_000)
    ledger.record(provider="anthropic", model="claude-haiku-4-5", input_tokens=200_000,
                  output_tokens=0)
    w = ledger.whatif("openai/gpt-4o-mini")
    assert w.calls == 2
    assert w.original_usd == Decimal("2.5") + Decimal("1") + Decimal("0.2")
    assert w.hypothetical_usd == Decimal("0.15") + Decimal("0.06") + Decimal("0.03")
    assert w.difference_usd == w.hypothetical_usd - w.original_usd < 0
    assert [(r["model"], r["calls"]) for r in w.rows] == [("claude-haiku-4-5", 1), ("gpt-4o", 1)]
    # a bare name resolves as chat() resolves it (issue 15, finding 4)
    assert ledger.whatif("gpt-4o-mini") == w
    with pytest.raises(errors.UnknownModelError):
        ledger.whatif("no-such-model")


def test_csv_export_neutralises_formulas(ledger, tmp_path):
    evil = ["=HYPERLINK(\"http://x\")", "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"]
    for i, text in enumerate(evil[:4]):
        ledger.record(provider="openai", model="gpt-4o", input_tokens=1, output_tokens=1,
                      tags={"user": text}, section=text, at=f"2025-01-0{i + 1}")
    for i, text in enumerate(evil[4:]):  # whitespace-led text only reaches the ledger raw
        ledger.add(CallRecord(provider="openai", model="gpt-4o", section=text, tags={"user": "u"},
                              total_usd=Decimal("0.0000125"), input_tokens=1,
                              started_at=datetime(2025, 1, 5 + i, tzinfo=timezone.utc)))
    out = tmp_path / "x.csv"
    assert ledger.export("csv", out) == len(evil)
    rows = list(csv.DictReader(out.open(newline="", encoding="utf-8")))
    assert [r["section"] for r in rows] == ["'" + t for t in evil]
    assert all(not json.loads(r["tags"].lstrip("'"))["user"].startswith("'") for r in rows)
    assert all(r["tags"].startswith("{") for r in rows)  # JSON text is not a formula
    assert rows[0]["total_usd"] == "0.0000125" and rows[0]["input_tokens"] == "1"


def test_json_and_jsonl_exports_keep_exact_money(ledger):
    ledger.record(provider="openai", model="gpt-4o-mini", input_tokens=3, output_tokens=7)
    buf = io.StringIO()
    assert ledger.export("jsonl", buf) == 1
    line = json.loads(buf.getvalue())
    assert line["total_usd"] == "0.00000465" and line["tags"] == {"service": "bot"}
    buf = io.StringIO()
    ledger.export("json", buf)
    assert json.loads(buf.getvalue())[0]["id"] == line["id"]
    with pytest.raises(errors.InvalidRequestError, match="xml"):
        ledger.export("xml", io.StringIO())


def test_parquet_export(ledger, tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    ledger.record(provider="openai", model="gpt-4o", input_tokens=3, output_tokens=7,
                  tags={"user": "u"})
    path = tmp_path / "x.parquet"
    assert ledger.export("parquet", path) == 1
    table = pq.read_table(path).to_pylist()
    assert table[0]["total_usd"] == Decimal("0.0000775") and table[0]["model"] == "gpt-4o"
    assert json.loads(table[0]["tags"]) == {"service": "bot", "user": "u"}


def test_parquet_without_pyarrow_says_how_to_install(ledger, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    ledger.record(provider="openai", model="gpt-4o", input_tokens=1, output_tokens=1)
    with pytest.raises(errors.MissingDependencyError, match="pip install"):
        ledger.export("parquet", tmp_path / "x.parquet")


async def test_record_takes_the_section_in_force(ledger):
    import asyncio

    from unillm.sections import Section

    async def task(name):
        with Section("agent:" + name), Section("llm:query"):
            await asyncio.sleep(0)
            return ledger.record(provider="openai", model="gpt-4o", input_tokens=1, output_tokens=1)

    a, b = await asyncio.gather(task("a"), task("b"))
    assert (a.section, b.section) == ("agent:a/llm:query", "agent:b/llm:query")
    assert ledger.record(provider="openai", model="gpt-4o", input_tokens=1, output_tokens=1,
                         section="explicit").section == "explicit"
    assert [r["section"] for r in ledger.summary(by=["section"], where={"section": "agent:a"})] == \
        ["agent:a/llm:query"]
