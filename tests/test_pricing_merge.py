"""Price files merge by name (the user's file wins), and names never price another generation.

Every amount is computed by hand next to it (tokens x USD per 1M / 1,000,000).
"""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest
from click.testing import CliRunner

from unillm import Client, errors
from unillm.cli import cli
from unillm.pricing import PriceBook
from unillm.testing import FakeProvider, Reply
from unillm.types import Usage

HI = [{"role": "user", "content": "hi"}]


def write(tmp_path: Path, text: str, name: str = "my_prices.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def show(*args: str):
    return CliRunner().invoke(cli, ["pricing", "show", *args], catch_exceptions=False)


# ── finding 1: the user's file wins for every name it defines ────────────────

BUNDLED_ALIAS_PRICED = """
[cohere."command-a-03-2025"]
input = 2.00
output = 8.00
"""


def test_user_file_may_price_a_name_the_bundled_book_lists_as_an_alias(tmp_path):
    # before: ConfigError "pricing.toml: cohere."command-a".aliases: alias 'command-a-03-2025'
    # is also a priced model of cohere" -- blaming the bundled file, breaking every model
    book = PriceBook.load(write(tmp_path, BUNDLED_ALIAS_PRICED))
    mine = book.price("cohere", "command-a-03-2025")
    assert (mine.model, mine.input, mine.output) == ("command-a-03-2025", D("2.00"), D("8.00"))
    assert "my_prices.toml" in mine.source
    bundled = book.price("cohere", "command-a")        # the bundled entry keeps its price...
    assert (bundled.input, bundled.output) == (D("2.50"), D("10.00"))
    assert "command-a-03-2025" not in book.find("cohere", "command-a").aliases  # ...not the name
    assert book.price("openai", "gpt-4o-mini").input == D("0.15")               # nothing else broke


def test_show_says_which_file_priced_it_and_what_it_replaced(tmp_path):
    path = write(tmp_path, BUNDLED_ALIAS_PRICED)
    r = show("cohere/command-a-03-2025", "--pricing", str(path))
    assert r.exit_code == 0, r.output
    assert f'exact: cohere."command-a-03-2025" in {path}' in r.output
    assert "overrides: alias of cohere/command-a in pricing.toml" in r.output
    data = json.loads(show("cohere/command-a-03-2025", "--pricing", str(path), "--format", "json").output)
    assert data["source"] == f'{path}: cohere."command-a-03-2025"'
    assert data["resolution"][0].startswith("exact:") and "overrides:" in data["resolution"][1]


def test_client_with_such_a_file_calls_any_model(fake: FakeProvider, tmp_path: Path):
    path = write(tmp_path, BUNDLED_ALIAS_PRICED)
    client = Client(providers=fake.providers(), pricing=str(path),
                    ledger=f"sqlite:///{tmp_path / 'ledger.db'}")
    fake.queue(Reply(text="ok", usage={"input_tokens": 1_000, "output_tokens": 100}),
               Reply(text="ok", usage={"input_tokens": 1_000, "output_tokens": 100}))
    client.chat(model="gpt-4o-mini", messages=HI, max_tokens=100)
    client.chat(model="cohere/command-a-03-2025", messages=HI, max_tokens=100)
    gpt, cohere = list(client.ledger.records())
    assert gpt.total_usd == D("0.00021")      # 1000 x 0.15 + 100 x 0.60 = 150 + 60
    assert cohere.total_usd == D("0.0028")    # 1000 x 2.00 + 100 x 8.00 = 2000 + 800 (my price)


def test_user_alias_takes_a_bundled_alias_and_hides_a_bundled_model(tmp_path):
    book = PriceBook.load(write(tmp_path, """
[anthropic."house-opus"]
input = 1
output = 2
aliases = ["claude-opus-4-0", "claude-3-opus"]
"""))
    assert book.price("anthropic", "claude-opus-4-0").model == "house-opus"   # was an alias of claude-opus-4
    assert book.price("anthropic", "claude-3-opus").model == "house-opus"     # was a bundled model
    assert book.price("anthropic", "claude-opus-4").input == D("15.00")       # keeps its own name
    assert book.find("anthropic", "claude-opus-4").aliases == ()
    path = book.resolve("anthropic", "claude-3-opus").path
    assert "overrides: model anthropic/claude-3-opus in pricing.toml (a later file wins)" in path


def test_user_file_keeps_merging_a_bundled_model_key_by_key_with_its_aliases(tmp_path):
    book = PriceBook.load(write(tmp_path, '[anthropic."claude-opus-4"]\ninput = 14\n'))
    p = book.price("anthropic", "claude-opus-4-0")             # the bundled alias still leads here
    assert (p.model, p.input, p.output) == ("claude-opus-4", D(14), D("75.00"))


@pytest.mark.parametrize("text,message", [
    ('[acme."a"]\ninput = 1\noutput = 1\naliases = ["b"]\n\n[acme."b"]\ninput = 1\noutput = 1\n',
     "alias 'b' is also a priced model of acme in this file"),
    ('[acme."a"]\ninput = 1\noutput = 1\naliases = ["x"]\n\n[acme."b"]\ninput = 1\noutput = 1\naliases = ["x"]\n',
     "alias 'x' already names acme/a in this file"),
])
def test_a_conflict_inside_one_file_names_that_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(errors.ConfigError) as exc:
        PriceBook.load(path)
    assert exc.value.file == str(path) and message in str(exc.value)
    assert not str(exc.value).startswith("pricing.toml")


# ── finding 4: names never price another generation ──────────────────────────

@pytest.mark.parametrize("model", [
    "mistral-medium-2604", "mistral-medium-2508", "mistral-large-2411", "mistral-small-2506",
    "magistral-medium-2507", "codestral-2501",
])
def test_mistral_latest_and_dated_names_are_not_priced_as_the_unversioned_entry(model):
    # before: mistral-medium-latest priced as mistral-medium at 0.40/2.00 (Medium 3.5 is 1.50/7.50);
    # names the book has no entry or alias for stay unpriced
    book = PriceBook.load()
    with pytest.raises(errors.MissingPriceError):
        book.price("mistral", model)
    (step,) = book.resolve("mistral", model).path
    assert "mistral.snapshots = 'explicit' in pricing.toml" in step


@pytest.mark.parametrize("model,entry,unversioned", [
    ("mistral-medium-latest", "mistral-medium-3-5", "mistral-medium"),
    ("mistral-large-latest", "mistral-large-2512", "mistral-large"),
    ("magistral-medium-latest", "magistral-medium-2509", "magistral-medium"),
    ("ministral-8b-latest", "ministral-8b-2512", "ministral-8b"),
    ("mistral-small-latest", "mistral-small-2603", "mistral-small"),
])
def test_mistral_latest_names_resolve_only_through_the_vendors_aliases(model, entry, unversioned):
    book = PriceBook.load()
    price = book.price("mistral", model)
    assert price.model == entry and price != book.price("mistral", unversioned)
    assert book.resolve("mistral", model).path == (
        f"alias: {model!r} names mistral.\"{entry}\" (aliases in pricing.toml)",)


@pytest.mark.parametrize("provider,model,family", [
    ("openai", "gpt-4o-2024-11-20", "gpt-4o"),
    ("openai", "gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
    ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ("google", "gemini-2.0-flash-001", "gemini-2.0-flash"),
])
def test_same_price_vendors_keep_pricing_snapshots_as_their_family(provider, model, family):
    book = PriceBook.load()
    assert book.price(provider, model).model == family
    assert book.resolve(provider, model).path[0] == (
        f"snapshot: {model!r} -> {family!r} ({provider}.snapshots = 'same-price' in pricing.toml)")


def test_cohere_dated_names_are_priced_only_through_aliases():
    book = PriceBook.load()
    assert book.price("cohere", "command-r-08-2024").model == "command-r"       # an alias
    with pytest.raises(errors.MissingPriceError):
        book.price("cohere", "command-r-03-2024")    # priced apart by Cohere: not stripped


def test_the_snapshot_policy_is_data_a_user_file_can_set(tmp_path):
    book = PriceBook.load(write(tmp_path, """
[mistral]
snapshots = "same-price"

[openai."gpt-4o"]
snapshots = "explicit"
"""))
    assert book.price("mistral", "mistral-small-2506").model == "mistral-small"
    with pytest.raises(errors.MissingPriceError):
        book.price("openai", "gpt-4o-2024-11-20")          # the model's own setting wins
    assert book.price("openai", "gpt-4o-mini-2024-07-18").model == "gpt-4o-mini"
    assert book.resolve("mistral", "mistral-small-2506").path[0].endswith(
        f"(mistral.snapshots = 'same-price' in {tmp_path / 'my_prices.toml'})")


def test_a_provider_without_a_setting_is_explicit(tmp_path):
    book = PriceBook.load(write(tmp_path, '[acme."m"]\ninput = 1\noutput = 1\n'))
    assert book.snapshot_policy("acme") == ("explicit", None)
    with pytest.raises(errors.MissingPriceError):
        book.price("acme", "m-latest")


@pytest.mark.parametrize("text,key", [
    ('[mistral]\nsnapshots = "always"\n', "mistral.snapshots"),
    ('[mistral]\nsnapshot = "explicit"\n', "mistral.snapshot"),
    ('[acme."m"]\ninput = 1\noutput = 1\nsnapshots = 1\n', 'acme."m".snapshots'),
])
def test_bad_snapshot_settings_name_file_and_key(tmp_path, text, key):
    path = write(tmp_path, text)
    with pytest.raises(errors.ConfigError) as exc:
        PriceBook.load(path)
    assert exc.value.file == str(path) and exc.value.key == key


def test_show_reports_the_resolution_path_of_a_snapshot_and_of_an_unpriced_name():
    r = show("gpt-4o-2024-11-20")
    assert r.exit_code == 0
    assert "resolution:\n  snapshot: 'gpt-4o-2024-11-20' -> 'gpt-4o'" in r.output
    assert '\n  exact: openai."gpt-4o" in pricing.toml' in r.output
    r = show("mistral/mistral-medium-2604")
    assert r.exit_code == 1 and "no price for mistral/mistral-medium-2604" in r.output
    assert "looked up: not a snapshot of mistral.\"mistral-medium\"" in r.output


def test_same_price_snapshot_costs_what_its_family_costs():
    book = PriceBook.load()
    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    assert book.cost("openai", "gpt-4o-2024-11-20", usage).total_usd == D("0.0125")  # 1000 x 2.5 + 1000 x 10


def test_diff_shows_a_changed_snapshot_setting(tmp_path):
    old = write(tmp_path, '[mistral]\nsnapshots = "explicit"\n\n[mistral."m"]\ninput = 1\noutput = 1\n', "old.toml")
    new = write(tmp_path, '[mistral]\nsnapshots = "same-price"\n\n[mistral."m"]\ninput = 1\noutput = 1\n'
                          'snapshots = "explicit"\n', "new.toml")
    r = CliRunner().invoke(cli, ["pricing", "diff", str(old), str(new), "--format", "json"])
    assert r.exit_code == 0, r.output
    changes = {(c["model"], c["key"]): (c["old"], c["new"]) for c in json.loads(r.output)["changes"]}
    assert changes == {("mistral", "snapshots"): ("explicit", "same-price"),
                       ("mistral/m", "snapshots"): (None, "explicit")}


def test_a_partial_table_for_a_bundled_alias_is_a_new_model_and_must_give_its_prices(tmp_path):
    path = write(tmp_path, '[cohere."command-a-03-2025"]\ninput = 2.00\n')
    with pytest.raises(errors.ConfigError) as exc:
        PriceBook.load(path)
    assert exc.value.file == str(path) and exc.value.key == 'cohere."command-a-03-2025"'
    assert "missing 'output'" in str(exc.value)


def test_a_model_of_a_same_price_vendor_can_opt_out_of_snapshot_stripping():
    # gpt-3.5-turbo-1106 was billed above gpt-3.5-turbo(-0125): it must not take the 0125 price
    book = PriceBook.load()
    assert book.price("openai", "gpt-3.5-turbo-0125").model == "gpt-3.5-turbo"   # an alias
    with pytest.raises(errors.MissingPriceError):
        book.price("openai", "gpt-3.5-turbo-1106")
    (step,) = book.resolve("openai", "gpt-3.5-turbo-1106").path
    assert "openai.\"gpt-3.5-turbo\".snapshots = 'explicit'" in step
