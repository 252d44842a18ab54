"""Sections as a tree: ``summary(by=["section"], rollup=True)`` and ``unillm ledger summary
--by section --rollup`` give every section its whole subtree, ancestors included, exactly."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from collections.abc import Iterator
from click.testing import CliRunner

from unillm import Client, errors
from unillm.cli import cli
from unillm.ledger import Ledger

ROWS = [("agent:research", "1"), ("agent:research/llm:query", "2"), ("agent:research/llm:query", "3"),
        ("agent:research/tool:search", "0.5"), ("agent:write/llm:draft", "4"), (None, "10")]


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    client = Client(ledger=f"sqlite:///{tmp_path / 'l.db'}")
    for section, thousands in ROWS:
        client.ledger.record(provider="openai", model="gpt-4o-mini", input_tokens=int(Decimal(thousands) * 1000),
                             output_tokens=0, section=section)
    yield client.ledger
    client.close()


def cost_of(section: str) -> Decimal:
    """$0.15 per 1M input tokens, every row of the subtree."""
    tokens = sum(int(Decimal(t) * 1000) for s, t in ROWS if s is not None and (s == section or s.startswith(section + "/")))
    return Decimal("0.15") * tokens / 10**6


def test_each_section_counts_its_subtree_and_every_ancestor_has_a_row(ledger):
    rows = ledger.summary(by=["section"], rollup=True)
    calls = {r["section"]: r["calls"] for r in rows}
    assert calls == {"agent:research": 4, "agent:research/llm:query": 2, "agent:research/tool:search": 1,
                     "agent:write": 1, "agent:write/llm:draft": 1, None: 1}
    assert [r["section"] for r in rows][:3] == ["agent:research", "agent:research/llm:query",
                                                "agent:research/tool:search"]
    costs = {r["section"]: r["cost_usd"] for r in rows}
    assert costs["agent:research"] == cost_of("agent:research") == Decimal("0.000975")
    flat = {r["section"]: r["calls"] for r in ledger.summary(by=["section"])}
    assert "agent:write" not in flat and flat["agent:research"] == 1


def test_rollup_with_more_keys_and_a_section_filter(ledger):
    rows = ledger.summary(by=["section", "model"], rollup=True, where={"section": "agent:research"})
    assert {(r["section"], r["model"], r["calls"]) for r in rows} == {
        ("agent:research", "gpt-4o-mini", 4), ("agent:research/llm:query", "gpt-4o-mini", 2),
        ("agent:research/tool:search", "gpt-4o-mini", 1)}


def test_rollup_needs_the_section_dimension(ledger):
    with pytest.raises(errors.InvalidRequestError) as info:
        ledger.summary(by=["model"], rollup=True)
    assert info.value.param == "rollup"


def test_the_cli_rolls_up_too(ledger, tmp_path):
    out = CliRunner().invoke(cli, ["ledger", "summary", "--by", "section", "--rollup", "--format", "json",
                                    "--ledger", f"sqlite:///{tmp_path / 'l.db'}"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert {r["section"]: r["calls"] for r in rows}["agent:research"] == 4
