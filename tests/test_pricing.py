"""The price book and exact cost, on usage shaped exactly as each vendor documents it.

Every expected amount is computed by hand in the comment next to it:
tokens x USD per 1M / 1,000,000, no rounding.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal as D
from pathlib import Path

import pytest

from unillm import errors
from unillm.pricing import PriceBook, bundled_model_names, bundled_path
from unillm.profiles import bundled_profiles
from unillm.types import Usage

from .conftest import ref

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook.load()


def write(tmp_path: Path, text: str, name: str = "my_prices.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# ── vendor-shaped usage -> hand-computed cost ────────────────────────────────

def test_openai_cached_prompt_is_not_charged_twice(book):
    # OpenAI: prompt_tokens 2006 INCLUDES cached_tokens 1920 -> 86 uncached + 1920 cache read
    u = ref("openai_usage_prompt_caching_doc_fragment")["usage"]
    cached = u["prompt_tokens_details"]["cached_tokens"]
    usage = Usage(input_tokens=u["prompt_tokens"] - cached, cache_read_tokens=cached,
                  output_tokens=u["completion_tokens"])
    cost = book.cost("openai", "gpt-4o", usage, at=date(2025, 6, 1))
    assert cost.input_usd == D("0.000215")          # 86 x 2.50 / 1M
    assert cost.cache_read_usd == D("0.0024")       # 1920 x 1.25 / 1M
    assert cost.output_usd == D("0.003")            # 300 x 10.00 / 1M
    assert cost.total_usd == D("0.005615")
    assert cost.tier is None and "openai.\"gpt-4o\"" in cost.price_version


def test_openai_reasoning_is_inside_output_not_added(book):
    # Batch API reference: input 1500 incl. 1024 cached; output 500 incl. 300 reasoning; gpt-5 snapshot
    body = ref("openai_batch_usage_api_reference_fragment")
    u = body["usage"]
    cached = u["input_tokens_details"]["cached_tokens"]
    usage = Usage(input_tokens=u["input_tokens"] - cached, cache_read_tokens=cached,
                  output_tokens=u["output_tokens"], reasoning_tokens=u["output_tokens_details"]["reasoning_tokens"])
    cost = book.cost("openai", body["model"], usage, at=date(2025, 9, 1))
    assert cost.input_usd == D("0.000595")          # 476 x 1.25 / 1M
    assert cost.cache_read_usd == D("0.000128")     # 1024 x 0.125 / 1M
    assert cost.output_usd == D("0.005")            # 500 x 10.00 / 1M (not 800)
    assert cost.total_usd == D("0.005723")


def test_openai_o1_reasoning_reference(book):
    u = ref("openai_responses_api_reasoning_api_reference")["usage"]
    usage = Usage(input_tokens=u["input_tokens"], output_tokens=u["output_tokens"],
                  reasoning_tokens=u["output_tokens_details"]["reasoning_tokens"])
    cost = book.cost("openai", "o1-2024-12-17", usage)
    assert cost.total_usd == D("0.063315")          # 81 x 15 + 1035 x 60 = 1215 + 62100 -> / 1M


ANTHROPIC_TURNS = [
    # (turn, cost) by hand on claude-sonnet-4-5: input 3.00, cache_write 3.75, cache read 0.30, output 15
    (1, D("0.7029195")),   # 4x3 + 187354x3.75 + 0x0.30 + 22x15 = 12 + 702577.5 + 0 + 330
    (2, D("0.0608082")),   # 4x3 + 36x3.75 + 187354x0.30 + 297x15 = 12 + 135 + 56206.2 + 4455
    (3, D("0.061719")),    # 4x3 + 308x3.75 + 187390x0.30 + 289x15 = 12 + 1155 + 56217 + 4335
    (4, D("0.06195015")),  # 4x3 + 301x3.75 + 187698x0.30 + 300x15 = 12 + 1128.75 + 56309.4 + 4500
]


@pytest.mark.parametrize("turn,expected", ANTHROPIC_TURNS)
def test_anthropic_cache_write_and_read(book, turn, expected):
    # Anthropic: input_tokens EXCLUDES cache reads and cache creation: three separate buckets
    u = ref("anthropic_usage_prompt_caching_cookbook")[turn - 1]["usage"]
    usage = Usage(input_tokens=u["input_tokens"], cache_read_tokens=u["cache_read_input_tokens"],
                  cache_write_tokens=u["cache_creation_input_tokens"], output_tokens=u["output_tokens"])
    cost = book.cost("anthropic", "claude-sonnet-4-5-20250929", usage)
    assert cost.total_usd == expected
    assert cost.cache_write_usd == D(u["cache_creation_input_tokens"]) * D("3.75") / 1_000_000
    assert cost.tier is None  # every turn's prompt stays under 200k


def test_gemini_cached_and_thinking(book):
    # Gemini: promptTokenCount 5 INCLUDES cachedContentTokenCount 3; candidatesTokenCount 238
    # EXCLUDES thoughtsTokenCount 41 -> output 279
    m = ref("gemini_generate_content_cached_thinking")["usageMetadata"]
    usage = Usage(input_tokens=m["promptTokenCount"] - m["cachedContentTokenCount"],
                  cache_read_tokens=m["cachedContentTokenCount"],
                  output_tokens=m["candidatesTokenCount"] + m["thoughtsTokenCount"],
                  reasoning_tokens=m["thoughtsTokenCount"])
    cost = book.cost("google", "gemini-2.5-flash", usage)
    assert cost.input_usd == D("0.0000006")          # 2 x 0.30 / 1M
    assert cost.cache_read_usd == D("0.00000009")    # 3 x 0.03 / 1M
    assert cost.output_usd == D("0.0006975")         # 279 x 2.50 / 1M (thinking included)
    assert cost.total_usd == D("0.00069819")


def test_gemini_thinking_only(book):
    m = ref("gemini_generate_content_thinking")["usageMetadata"]
    usage = Usage(input_tokens=m["promptTokenCount"], output_tokens=m["candidatesTokenCount"] + m["thoughtsTokenCount"])
    assert book.cost("google", "gemini-2.5-flash", usage).total_usd == D("0.0000552")  # 9x0.30 + 21x2.50


def test_gemini_long_prompt_bills_whole_request_at_tier(book):
    usage = Usage(input_tokens=150_000, cache_read_tokens=60_000, output_tokens=1_000)  # prompt 210k
    cost = book.cost("google", "gemini-2.5-pro", usage)
    assert cost.tier == "above_prompt_tokens=200000"
    assert cost.input_usd == D("0.375")              # 150000 x 2.50 / 1M
    assert cost.cache_read_usd == D("0.015")         # 60000 x 0.25 / 1M
    assert cost.output_usd == D("0.015")             # 1000 x 15.00 / 1M
    assert cost.total_usd == D("0.405")


def test_tier_starts_strictly_above_threshold(book):
    at_limit = book.cost("google", "gemini-2.5-pro", Usage(input_tokens=200_000, output_tokens=1_000))
    assert at_limit.tier is None and at_limit.total_usd == D("0.26")   # 200000x1.25 + 1000x10
    over = book.cost("google", "gemini-2.5-pro", Usage(input_tokens=200_001))
    assert over.tier is not None and over.input_usd == D("0.5000025")  # 200001 x 2.50


def test_claude_sonnet_long_context_tier_counts_cache_tokens(book):
    # 4 uncached + 190000 cache read + 20000 cache write = 210004 prompt tokens > 200k
    usage = Usage(input_tokens=4, cache_read_tokens=190_000, cache_write_tokens=20_000, output_tokens=100)
    cost = book.cost("anthropic", "claude-sonnet-4-5", usage)
    assert cost.tier == "above_prompt_tokens=200000"
    assert cost.total_usd == D("0.266274")  # 4x6 + 190000x0.60 + 20000x7.50 + 100x22.50 = 24+114000+150000+2250


def test_anthropic_1h_cache_writes_bill_at_the_1h_rate(book):
    # 3000 cache writes of which 1000 with a 1-hour TTL; sonnet: 5m write 3.75, 1h write 6.00
    usage = Usage(input_tokens=10, cache_write_tokens=3000, cache_write_1h_tokens=1000, output_tokens=5)
    cost = book.cost("anthropic", "claude-sonnet-4-5", usage)
    assert usage.prompt_tokens == 3010                 # the 1h part is not counted twice
    assert cost.cache_write_usd == D("0.0135")         # 2000 x 3.75 + 1000 x 6.00 = 7500 + 6000
    assert cost.total_usd == D("0.013605")             # 10 x 3 + 13500 + 5 x 15 = 30 + 13500 + 75


def test_anthropic_1h_cache_writes_in_the_long_context_tier(book):
    # prompt 4 + 190000 + 20000 = 210004 > 200k: 5m writes at 7.50, 1h writes at 12.00
    usage = Usage(input_tokens=4, cache_read_tokens=190_000, cache_write_tokens=20_000,
                  cache_write_1h_tokens=5_000, output_tokens=100)
    cost = book.cost("anthropic", "claude-sonnet-4-5", usage)
    assert cost.tier == "above_prompt_tokens=200000"
    assert cost.cache_write_usd == D("0.1725")         # 15000 x 7.50 + 5000 x 12.00 = 112500 + 60000
    assert cost.total_usd == D("0.288774")             # 24 + 114000 + 172500 + 2250


def test_bundled_anthropic_1h_writes_cost_twice_the_input_price(book):
    checked = 0
    for pm in book.models():
        if pm.provider != "anthropic":
            continue
        for rates in (*pm.entries, *(t for p in pm.entries for t in p.tiers)):
            assert rates.cache_write_1h == 2 * rates.input, pm.name
            checked += 1
    assert checked >= 12  # every Anthropic model and its long-context tiers
    assert book.price("anthropic", "claude-opus-4-5").cache_write_1h == D("10.00")
    assert book.price("anthropic", "claude-haiku-4-5").cache_write_1h == D("2.00")


def test_missing_1h_price_bills_at_cache_write_then_input(tmp_path):
    book = PriceBook.load(write(tmp_path, """
[acme."writes"]
input = 1.00
cache_write = 1.25
output = 2.00

[[acme."writes".tiers]]
above_prompt_tokens = 1000
input = 4.00
cache_write = 5.00
output = 8.00

[acme."plain"]
input = 1.00
output = 2.00
"""))
    one_hour = Usage(cache_write_tokens=100, cache_write_1h_tokens=100)
    assert book.cost("acme", "writes", one_hour).cache_write_usd == D("0.000125")   # 100 x 1.25
    assert book.cost("acme", "plain", one_hour).cache_write_usd == D("0.0001")      # 100 x 1.00
    big = Usage(cache_write_tokens=2000, cache_write_1h_tokens=2000)                # tier: cache_write 5.00
    assert book.cost("acme", "writes", big).cache_write_usd == D("0.01")            # 2000 x 5.00


def test_1h_writes_are_a_part_of_cache_writes():
    with pytest.raises(ValueError, match="cannot exceed"):
        Usage(cache_write_tokens=10, cache_write_1h_tokens=11)
    assert Usage(cache_write_tokens=10, cache_write_1h_tokens=10).total_tokens == 10


def test_1h_price_is_exact_at_odd_rates_and_huge_counts(tmp_path):
    book = PriceBook.load(write(tmp_path, '[acme."m"]\ninput = 1\noutput = 1\ncache_write = 0.0000001\n'
                                          'cache_write_1h = 0.0000003\n'))
    usage = Usage(cache_write_tokens=123_456_789_012_345, cache_write_1h_tokens=23_456_789_012_345)
    # 100000000000000 x 0.0000001 + 23456789012345 x 0.0000003 = 10000000 + 7037036.7037035 -> / 1M
    assert book.cost("acme", "m", usage).cache_write_usd == D("17.0370367037035")


def test_litellm_import_maps_1h_cache_write_prices():
    from unillm.cli.pricing import convert_litellm
    tables, _ = convert_litellm({"claude-sonnet-4-5": {
        "litellm_provider": "anthropic", "mode": "chat", "input_cost_per_token": 3e-06,
        "output_cost_per_token": 1.5e-05, "cache_creation_input_token_cost": 3.75e-06,
        "cache_creation_input_token_cost_above_1hr": 6e-06,
        "input_cost_per_token_above_200k_tokens": 6e-06, "output_cost_per_token_above_200k_tokens": 2.25e-05,
        "cache_creation_input_token_cost_above_1hr_above_200k_tokens": 1.2e-05}})
    table = tables[("anthropic", "claude-sonnet-4-5")]
    assert (table["cache_write"], table["cache_write_1h"]) == (D("3.75"), D("6"))
    assert table["tiers"] == [{"above_prompt_tokens": 200_000, "input": D("6"), "output": D("22.5"),
                               "cache_write_1h": D("12")}]


def test_pricing_show_lists_the_1h_write_price():
    from click.testing import CliRunner

    from unillm.cli import cli
    out = CliRunner().invoke(cli, ["pricing", "show", "anthropic/claude-sonnet-4-5"]).output
    assert any(line.split()[:2] == ["cache_write_1h", "6.00"] for line in out.splitlines()), out
    assert "cache_write_1h 12.00" in out  # the long-context tier line


def test_cohere_bills_billed_units_not_tokens(book):
    u = ref("cohere_v2_chat_api_reference")["usage"]
    billed = Usage(input_tokens=u["billed_units"]["input_tokens"], output_tokens=u["billed_units"]["output_tokens"])
    cost = book.cost("cohere", "command-a-03-2025", billed)
    assert cost.total_usd == D("0.0041925")  # 5 x 2.50 + 418 x 10.00 = 12.5 + 4180 -> / 1M
    assert u["tokens"]["input_tokens"] != u["billed_units"]["input_tokens"]  # the trap is real


def test_perplexity_request_fee_goes_to_other(book):
    cost = book.cost("perplexity", "sonar", Usage(input_tokens=100, output_tokens=200))
    assert (cost.input_usd, cost.output_usd, cost.other_usd) == (D("0.0001"), D("0.0002"), D("0.005"))
    assert cost.total_usd == D("0.0053")


def test_missing_cached_and_cache_write_prices_bill_at_input(book):
    # command-r has no cached_input/cache_write: both buckets bill at input (0.15), never at 0
    cost = book.cost("cohere", "command-r", Usage(cache_read_tokens=1000, cache_write_tokens=2000))
    assert cost.cache_read_usd == D("0.00015") and cost.cache_write_usd == D("0.0003")
    # grok-4's >128k tier gives no cached_input: cache reads bill at the tier's input (6.00)
    tier = book.cost("xai", "grok-4", Usage(input_tokens=100_000, cache_read_tokens=30_000))
    assert tier.tier == "above_prompt_tokens=128000" and tier.cache_read_usd == D("0.18")


def test_amounts_are_exact_decimals_for_huge_counts(book):
    usage = Usage(input_tokens=123_456_789_012, output_tokens=987_654_321_098)
    cost = book.cost("openai", "gpt-4.1-nano", usage)
    assert cost.total_usd == D("12345.6789012") + D("395061.7284392")  # x0.10 and x0.40 per 1M


def test_zero_usage_on_free_model_is_an_explicit_zero(book):
    cost = book.cost("ollama", "llama3.2:3b", Usage(input_tokens=1000, output_tokens=1000))
    assert cost.total_usd == 0 and 'ollama."*"' in cost.price_version


# ── lookup ───────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("provider,model,priced_as", [
    ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku"),
    ("anthropic", "claude-opus-4-0", "claude-opus-4"),
    ("openai", "gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
    ("cohere", "command-a-03-2025", "command-a"),
    ("google", "gemini-2.0-flash-001", "gemini-2.0-flash"),
    ("cohere", "command-r-08-2024", "command-r"),
    ("cohere", "command-r7b-12-2024", "command-r7b"),
    ("xai", "grok-4-0709", "grok-4"),
    ("openrouter", "openai/gpt-4.1", "gpt-4.1"),
])
def test_lookup_alias_snapshot_and_router(book, provider, model, priced_as):
    assert book.price(provider, model).model == priced_as


# ── max output tokens ────────────────────────────────────────────────────────

@pytest.mark.parametrize("provider,model,limit", [
    ("openai", "gpt-4o", 16384),
    ("openai", "gpt-4o-2024-11-20", 16384),          # snapshot -> gpt-4o
    ("openai", "gpt-4o-2024-05-13", 4096),           # its own table beats stripping
    ("openai", "gpt-4.1-mini", 32768),
    ("openai", "o1-2024-12-17", 100000),
    ("openai", "gpt-5-nano", 128000),
    ("openai", "gpt-5-chat-latest", 16384),          # same price as gpt-5, smaller limit
    ("anthropic", "claude-opus-4-0", 32000),         # alias -> claude-opus-4
    ("anthropic", "claude-sonnet-4-5-20250929", 64000),
    ("anthropic", "claude-3-5-haiku-latest", 8192),
    ("google", "gemini-2.0-flash-001", 8192),
    ("google", "gemini-2.5-pro", 65536),
    ("cohere", "command-a-03-2025", 8000),
    ("cohere", "command-r-08-2024", 4000),
    ("deepseek", "deepseek-reasoner", 65536),
    ("openrouter", "openai/gpt-4.1", 32768),         # router id -> the vendor's table
    ("ollama", "llama3.2", None),
])
def test_max_output_tokens_follows_lookup_like_prices(book, provider, model, limit):
    assert book.price(provider, model).max_output_tokens == limit
    assert book.find(provider, model).max_output_tokens == limit


def test_chat_latest_costs_what_its_sibling_costs(book):
    chat, reasoning = book.price("openai", "gpt-5-chat-latest"), book.price("openai", "gpt-5")
    assert (chat.input, chat.cached_input, chat.output) == (reasoning.input, reasoning.cached_input,
                                                            reasoning.output)
    assert (chat.max_output_tokens, reasoning.max_output_tokens) == (16384, 128000)


def test_max_output_tokens_is_on_every_dated_entry(book):
    # o3 before its 2025-06-10 price cut: the old price, the same model limit
    old = book.price("openai", "o3", at=date(2025, 5, 1))
    assert old.input == D("10.00") and old.max_output_tokens == 100000


def test_user_file_sets_max_output_tokens(tmp_path):
    book = PriceBook.load(write(tmp_path, """
[openai."gpt-4o"]
max_output_tokens = 8000

[acme."long-writer"]
input = 1
output = 2
max_output_tokens = 1_000_000

[acme."*"]
input = 0
output = 0
max_output_tokens = 2048
"""))
    gpt = book.price("openai", "gpt-4o")
    assert gpt.max_output_tokens == 8000 and gpt.input == D("2.50")  # the bundled prices stay
    assert book.price("acme", "long-writer").max_output_tokens == 1_000_000
    assert book.price("acme", "anything-else").max_output_tokens == 2048
    assert book.price("anthropic", "claude-haiku-4-5").max_output_tokens == 64000


def test_bundled_limits_are_whole_token_counts(book):
    limits = {pm.max_output_tokens for pm in book.models()} - {None}
    assert limits and all(type(n) is int and 1000 <= n <= 272000 for n in limits)


def test_exact_snapshot_beats_stripping(book):
    assert book.price("openai", "gpt-4o-2024-05-13").input == D("5.00")
    assert book.price("openai", "gpt-4o-2024-08-06", at=date(2024, 9, 1)).input == D("2.50")


def test_history_price_in_force_on_call_date(book):
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    old = book.cost("openai", "gpt-4o", usage, at=datetime(2024, 6, 1, 12, tzinfo=timezone.utc))
    new = book.cost("openai", "gpt-4o", usage, at=datetime(2025, 1, 1, tzinfo=timezone.utc))
    assert old.total_usd == D("20.00") and new.total_usd == D("12.50")
    assert "history[0]" in old.price_version and "history" not in new.price_version
    # `until` is exclusive: the new price applies from that day on
    assert book.price("openai", "gpt-4o", at=date(2024, 10, 1)).input == D("5.00")
    assert book.price("openai", "gpt-4o", at=date(2024, 10, 2)).input == D("2.50")


def test_history_with_several_entries(book):
    p = [book.price("deepseek", "deepseek-chat", at=date(2025, m, d)).output
         for m, d in ((8, 1), (9, 10), (10, 1))]
    assert p == [D("1.10"), D("1.68"), D("0.42")]


def test_at_uses_the_utc_date():
    path_book = PriceBook.load()
    late = datetime(2024, 10, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))  # 2024-10-02 UTC
    assert path_book.price("openai", "gpt-4o", at=late).input == D("2.50")


def test_unpriced_model_raises_never_zero(book):
    with pytest.raises(errors.MissingPriceError) as exc:
        book.cost("openai", "gpt-4x", Usage(input_tokens=10))
    assert exc.value.provider == "openai" and exc.value.model == "gpt-4x"
    assert "openai/gpt-4o" in exc.value.suggestions
    with pytest.raises(errors.MissingPriceError):
        book.price("groq", "some-new-model")
    with pytest.raises(errors.MissingPriceError):
        book.price("nosuchvendor", "gpt-4o")


def test_bundled_book_covers_40_models_and_every_profile(book):
    models = list(book.models())
    assert len(models) >= 40
    priced = {pm.provider for pm in models}
    from unillm.adapters.cloud import price_table
    from unillm.profiles import build_settings
    # a cloud profile may be priced by its cloud's table (vertex-anthropic by -global's)
    assert {price_table(p) or name for name, p in build_settings().items()} <= priced
    assert set(bundled_profiles()) == set(build_settings())
    for pm in models:  # nothing priced implicitly: every entry has input and output
        assert all(p.input is not None and p.output is not None for p in pm.entries)


def test_bundled_model_names():
    names = bundled_model_names()
    assert {"openai/gpt-4o", "gpt-4o", "claude-opus-4-0", "anthropic/claude-opus-4-0"} <= set(names)
    assert not any(n.endswith("*") for n in names)


def test_version_changes_with_content(tmp_path):
    a = PriceBook.load(write(tmp_path, '[openai."gpt-4o"]\ninput = 2.00\n'))
    b = PriceBook.load(write(tmp_path, '[openai."gpt-4o"]\ninput = 2.10\n'))
    assert len({a.version, b.version, PriceBook.load().version}) == 3


def test_loading_is_lazy_and_cached():
    code = ("import sys, unillm.pricing as p; assert p._bundled_raw.cache_info().currsize == 0; "
            "a = p.PriceBook.load(); assert p.PriceBook.load() is a; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.strip() == "ok", proc.stderr


# ── user files ───────────────────────────────────────────────────────────────

def test_user_file_merges_key_by_key(tmp_path):
    path = write(tmp_path, """
[openai."gpt-4o"]
input = 2.00          # negotiated

[acme."house-model"]
input = 1
output = 2
""")
    book = PriceBook.load(path)
    p = book.price("openai", "gpt-4o")
    assert (p.input, p.cached_input, p.output) == (D("2.00"), D("1.25"), D("10.00"))  # rest kept
    assert "my_prices.toml" in p.source and "pricing.toml" in p.source
    assert book.price("acme", "house-model").output == D(2)
    assert book.price("anthropic", "claude-haiku-4-5").input == D("1.00")  # untouched


def test_units_go_to_other(tmp_path):
    book = PriceBook.load(write(tmp_path, """
[acme."vision"]
input = 1.00
output = 2.00
per_call = 0.001
per_image = 0.0025
per_1k_chars = 0.02
per_minute = 0.006
"""))
    cost = book.cost("acme", "vision", Usage(input_tokens=1000), units={"images": 2, "chars": 1500, "minutes": D("2.5")})
    # 0.001 + 2 x 0.0025 + 1.5 x 0.02 + 2.5 x 0.006 = 0.001 + 0.005 + 0.03 + 0.015
    assert cost.other_usd == D("0.051") and cost.input_usd == D("0.001")
    assert book.cost("acme", "vision", Usage()).other_usd == D("0.001")  # per_call always once
    with pytest.raises(ValueError, match="unknown units"):
        book.cost("acme", "vision", Usage(), units={"image": 1})


BAD_FILES = [
    ('[openai."gpt-4o"]\ninptu = 2.0\n', 'openai."gpt-4o".inptu', "unknown key"),
    ('[openai."gpt-4o"]\ninput = -1.0\n', 'openai."gpt-4o".input', "negative"),
    ('[openai."gpt-4o"]\ninput = "2.50"\n', 'openai."gpt-4o".input', "must be a number"),
    ('[openai."gpt-4o"]\ninput = true\n', 'openai."gpt-4o".input', "must be a number"),
    ('[openai."gpt-4o"]\ninput = nan\n', 'openai."gpt-4o".input', "finite"),
    ('[acme."m"]\ninput = 1.0\n', 'acme."m"', "missing 'output'"),
    ('[acme."m"]\ninput = 1.0\noutput = 1.0\n[[acme."m".tiers]]\nabove_prompt_tokens = 1000\n',
     'acme."m".tiers[0]', "needs its own prices"),
    ('[acme."m"]\ninput = 1.0\noutput = 1.0\n[[acme."m".tiers]]\nabove_prompt_tokens = -5\ninput = 1.0\noutput = 1.0\n',
     'acme."m".tiers[0].above_prompt_tokens', "positive"),
    ('[acme."m"]\ninput = 1.0\noutput = 1.0\nsince = 2025-01-01\n'
     '[[acme."m".history]]\nuntil = 2025-03-01\ninput = 2.0\noutput = 2.0\n', 'acme."m"', "overlap"),
    ('[acme."m"]\ninput = 1.0\noutput = 1.0\n'
     '[[acme."m".history]]\nuntil = 2025-03-01\ninput = 2.0\noutput = 2.0\n'
     '[[acme."m".history]]\nsince = 2025-02-01\nuntil = 2025-05-01\ninput = 3.0\noutput = 3.0\n', 'acme."m"', "overlap"),
    ('[acme."m"]\ninput = 1.0\noutput = 1.0\n[[acme."m".history]]\ninput = 2.0\noutput = 2.0\n',
     'acme."m".history[0]', "needs 'until'"),
    ('[acme."m"]\ninput = 1.0\noutput = 1.0\nsince = 2025-01-01T00:00:00\n', 'acme."m".since', "date"),
    ('[acme."m"]\ninput = 1.0\noutput = 1.0\naliases = ["gpt-4o"]\n[acme."gpt-4o"]\ninput = 1.0\noutput = 1.0\n',
     'acme."m".aliases', "also a priced model"),
    ('version = 3\n', "version", "table of models"),
    ('[acme."m"]\ninput = 1.0\noutput = 1.0\ncache_write_1h = -2.0\n', 'acme."m".cache_write_1h', "negative"),
    ('[acme."m"]\ninput = 1.0\noutput = 1.0\n[[acme."m".tiers]]\nabove_prompt_tokens = 9\ninput = 1.0\n'
     'output = 1.0\ncache_write_1hr = 2.0\n', 'acme."m".tiers[0].cache_write_1hr',
     "did you mean 'cache_write_1h'"),
    ('[openai."gpt-4o"]\ninput = 2.0\n[[openai."gpt-4o".history]]\nuntil = 2024-01-01\ninput = 1.0\noutptu = 1.0\n',
     'openai."gpt-4o".history[0].outptu', "did you mean 'output'"),
    ('[openai."gpt-4o"]\nmax_output_tokens = 0\n', 'openai."gpt-4o".max_output_tokens', "positive whole number"),
    ('[openai."gpt-4o"]\nmax_output_tokens = -1\n', 'openai."gpt-4o".max_output_tokens', "positive whole number"),
    ('[openai."gpt-4o"]\nmax_output_tokens = 16384.0\n', 'openai."gpt-4o".max_output_tokens', "whole number"),
    ('[openai."gpt-4o"]\nmax_output_tokens = "16384"\n', 'openai."gpt-4o".max_output_tokens', "whole number"),
    ('[openai."gpt-4o"]\nmax_output_tokens = true\n', 'openai."gpt-4o".max_output_tokens', "whole number"),
    ('[openai."gpt-4o"]\nmax_outupt_tokens = 100\n', 'openai."gpt-4o".max_outupt_tokens',
     "did you mean 'max_output_tokens'"),
    ('[acme."m"]\ninput = 1.0\noutput = 1.0\n[[acme."m".history]]\nuntil = 2025-03-01\ninput = 2.0\n'
     'output = 2.0\nmax_output_tokens = 100\n', 'acme."m".history[0].max_output_tokens', "model's own table"),
    ('[acme."m"]\ninput = 1.0\noutput = 1.0\n[[acme."m".tiers]]\nabove_prompt_tokens = 9\ninput = 1.0\n'
     'output = 1.0\nmax_output_tokens = 100\n', 'acme."m".tiers[0].max_output_tokens', "model's own table"),
]


@pytest.mark.parametrize("text,key,message", BAD_FILES)
def test_malformed_price_files_name_file_and_key(tmp_path, text, key, message):
    path = write(tmp_path, text)
    with pytest.raises(errors.ConfigError) as exc:
        PriceBook.load(path)
    assert "my_prices.toml" in str(exc.value)
    assert f"{key}:" in str(exc.value) or exc.value.key == key, str(exc.value)
    assert message in str(exc.value)


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(errors.ConfigError, match="my_prices.toml"):
        PriceBook.load(write(tmp_path, "[openai.\ninput ="))
    with pytest.raises(errors.ConfigError, match="file not found"):
        PriceBook.load(tmp_path / "nope.toml")


def test_bundled_file_is_the_repo_root_pricing_toml():
    assert bundled_path().resolve() == (REPO / "pricing.toml").resolve()


@pytest.mark.parametrize("provider,model,prompt", [
    ("openai", "gpt-4o", 1000), ("anthropic", "claude-sonnet-4-5", 150_000),
    ("anthropic", "claude-sonnet-4-5", 250_000), ("google", "gemini-2.5-pro", 300_000),
    ("perplexity", "sonar", 10)])
def test_worst_case_bounds_every_way_the_prompt_can_be_billed(provider, model, prompt) -> None:
    """A budget holds this much; no split of the prompt into buckets may cost more."""
    price = PriceBook.load().price(provider, model)
    prompt_usd, per_output = price.worst_case(prompt)
    shapes = [Usage(input_tokens=prompt), Usage(cache_write_tokens=prompt),
              Usage(cache_write_tokens=prompt, cache_write_1h_tokens=prompt),
              Usage(cache_read_tokens=prompt), Usage(input_tokens=prompt // 2, cache_write_tokens=prompt - prompt // 2)]
    assert prompt_usd == max(price.cost(u).total_usd for u in shapes)
    for out in (1, 1000):
        assert prompt_usd + per_output * out >= max(
            price.cost(u.model_copy(update={"output_tokens": out})).total_usd for u in shapes)
