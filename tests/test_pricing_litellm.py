"""`unillm pricing import` of LiteLLM's real, full catalog, then `Client(pricing=that_file)`.

The catalog is the file shipped in the litellm 1.110.2 wheel (tests/data/litellm/README.md).
Amounts are computed by hand from the per-token prices in that JSON, next to each assertion.
"""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest
from click.testing import CliRunner

from unillm import Client
from unillm.cli import cli
from unillm.pricing import PriceBook
from unillm.testing import FakeProvider, Reply

CATALOG = Path(__file__).parent / "data" / "litellm" / "model_prices_and_context_window_backup.json"
HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def imported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("litellm") / "litellm_prices.toml"
    r = CliRunner().invoke(cli, ["pricing", "import", str(CATALOG), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert f"models to {out}" in r.output
    return out


def test_the_fixture_is_the_real_catalog():
    catalog = json.loads(CATALOG.read_text())
    assert len(catalog) > 2000 and "sample_spec" in catalog
    assert catalog["gpt-4o-mini"]["input_cost_per_token"] == 1.5e-07
    assert catalog["command-a-03-2025"]["litellm_provider"] == "cohere_chat"


def test_imported_catalog_loads_over_the_bundled_book(imported):
    # before: ConfigError "pricing.toml: cohere."command-a".aliases: alias 'command-a-03-2025' is
    # also a priced model of cohere" -- the catalog prices names the bundled book lists as aliases
    alone = PriceBook.from_file(imported)
    assert sum(1 for _ in alone.models()) > 700
    book = PriceBook.load(imported)
    price = book.price("cohere", "command-a-03-2025")
    assert price.model == "command-a-03-2025" and str(imported) in price.source
    assert book.price("anthropic", "claude-opus-4-0").model   # bundled names still resolve


def test_client_with_the_imported_file_calls_openai_and_cohere(fake: FakeProvider, tmp_path, imported):
    client = Client(providers=fake.providers(), pricing=str(imported),
                    ledger=f"sqlite:///{tmp_path / 'ledger.db'}")
    usage = {"input_tokens": 2_000, "output_tokens": 500}
    fake.queue(Reply(text="ok", usage=usage), Reply(text="ok", usage=usage), Reply(text="ok", usage=usage))
    assert client.chat(model="gpt-4o-mini", messages=HI, max_tokens=500).provider == "openai"
    assert client.chat(model="cohere/command-a-03-2025", messages=HI, max_tokens=500).provider == "cohere"
    assert client.chat(model="cohere/command-r-08-2024", messages=HI, max_tokens=500).provider == "cohere"
    gpt, command_a, command_r = client.ledger.records()
    # 1.5e-07 / 6e-07 per token: 2000 x 0.15 + 500 x 0.60 = 300 + 300 -> / 1M
    assert gpt.status == "ok" and gpt.total_usd == D("0.0006")
    # 2.5e-06 / 1e-05 per token: 2000 x 2.50 + 500 x 10 = 5000 + 5000 -> / 1M
    assert command_a.status == "ok" and command_a.total_usd == D("0.01")
    # 1.5e-07 / 6e-07 per token: 2000 x 0.15 + 500 x 0.60 = 300 + 300 -> / 1M
    assert command_r.status == "ok" and command_r.total_usd == D("0.0006")
    for rec in (gpt, command_a, command_r):
        assert imported.name in (rec.price_version or ""), rec.price_version
