"""`unillm pricing show|check|import|diff` through click's CliRunner."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest
from click.testing import CliRunner

from unillm.cli import cli
from unillm.pricing import PriceBook


def run(*args: str):
    return CliRunner().invoke(cli, ["pricing", *args], catch_exceptions=False)


def test_show_snapshot_name_resolves_to_priced_model():
    r = run("show", "claude-sonnet-4-5-20250929")
    assert r.exit_code == 0, r.output
    assert "anthropic/claude-sonnet-4-5" in r.output and "pricing.toml" in r.output
    assert "cache_write" in r.output and "3.75" in r.output
    assert "prompt > 200000 tokens" in r.output


def test_show_json_and_history_date():
    r = run("show", "openai/gpt-4o", "--at", "2024-06-01", "--format", "json")
    data = json.loads(r.output)
    assert data["prices"] == {"input": "5.00", "output": "15.00"} and data["until"] == "2024-10-02"
    now = json.loads(run("show", "gpt-4o", "--format", "json").output)
    assert now["prices"]["input"] == "2.50" and len(now["history"]) == 1


def test_show_max_output_tokens():
    r = run("show", "claude-opus-4-0")
    assert r.exit_code == 0 and "max output: 32000 tokens" in r.output
    assert json.loads(run("show", "gpt-4o-2024-11-20", "--format", "json").output)["max_output_tokens"] == 16384
    assert "max output: unknown" in run("show", "mistral/mistral-large").output
    assert json.loads(run("show", "mistral/mistral-large", "--format", "json").output)["max_output_tokens"] is None


def test_show_bare_name_known_only_to_the_price_book():
    r = run("show", "llama-3.3-70b-versatile")
    assert r.exit_code == 0 and "groq/llama-3.3-70b-versatile" in r.output


def test_show_with_user_pricing(tmp_path):
    f = tmp_path / "p.toml"
    f.write_text('[openai."gpt-4o"]\ninput = 2.00\n')
    r = run("show", "gpt-4o", "--pricing", str(f), "--format", "json")
    data = json.loads(r.output)
    assert data["prices"]["input"] == "2.00" and data["prices"]["output"] == "10.00"
    assert "p.toml" in data["source"]


@pytest.mark.parametrize("model,message", [
    ("gpt-4x", "no price for openai/gpt-4x"),
    ("nope-model", "unknown model 'nope-model'"),
])
def test_show_unpriced_is_one_clean_line(model, message):
    r = run("show", model)
    assert r.exit_code == 1
    assert message in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1


CONFIG = """
pricing = "extra_prices.toml"

[aliases]
fast = "google/gemini-2.5-flash"
house = "acme/house-model"

[[rules]]
name = "short prompts go to mini"
use = "gpt-4o-mini"

[[rules]]
name = "cheap"
use = "claude-nonexistent-9"

[[fallbacks]]
model = "gpt-4o"
then = ["anthropic/claude-sonnet-4-5", "mistral-tiny-unpriced"]

[[budgets]]
name = "monthly"
limit_usd = 100
on_exceed = "downgrade:gpt-4.1-nano"
"""


def _config(tmp_path: Path, text: str = CONFIG) -> Path:
    (tmp_path / "extra_prices.toml").write_text('[acme."house-model"]\ninput = 1\noutput = 2\n')
    path = tmp_path / "unillm.toml"
    path.write_text(text)
    return path


def test_check_catches_unpriced_rule_target_and_fallback(tmp_path):
    cfg = _config(tmp_path, CONFIG.replace('[aliases]', '[providers.acme]\nadapter = "openai"\n\n[aliases]'))
    r = run("check", "--config", str(cfg))
    assert r.exit_code == 1
    assert "2 unpriced" in r.output
    assert "rules[1].use (cheap) = claude-nonexistent-9" in r.output
    assert "fallbacks[0].then[1] = mistral-tiny-unpriced" in r.output
    # the user's pricing file (relative to the config) priced the alias 'house'
    data = json.loads(run("check", "--config", str(cfg), "--format", "json").output.split("\nError")[0])
    status = {t["where"]: t["priced"] for t in data["targets"]}
    assert status["aliases.house"] and status["aliases.fast"] and status["budgets[0].on_exceed"]
    assert status["rules[0].use (short prompts go to mini)"]


def test_check_passes_when_everything_is_priced(tmp_path):
    cfg = _config(tmp_path, '[aliases]\nfast = "gemini-2.5-flash"\n\n[[fallbacks]]\nmodel = "gpt-4o"\nthen = ["claude-haiku-4-5"]\n')
    r = run("check", "--config", str(cfg))
    assert r.exit_code == 0, r.output
    assert r.output.count(" ok ") == 3


def test_check_missing_config_is_a_clean_error(tmp_path):
    r = run("check", "--config", str(tmp_path / "absent.toml"))
    assert r.exit_code == 1 and "absent.toml" in r.output and "file not found" in r.output


LITELLM = {
    "sample_spec": {"input_cost_per_token": 0, "output_cost_per_token": 0, "litellm_provider": "openai"},
    "gpt-4o": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
               "cache_read_input_token_cost": 1.25e-06, "litellm_provider": "openai", "mode": "chat",
               "max_input_tokens": 128000, "max_output_tokens": 16384, "max_tokens": 16384},
    "claude-sonnet-4-5-20250929": {
        "input_cost_per_token": 3e-06, "output_cost_per_token": 1.5e-05,
        "cache_creation_input_token_cost": 3.75e-06, "cache_read_input_token_cost": 3e-07,
        "input_cost_per_token_above_200k_tokens": 6e-06, "output_cost_per_token_above_200k_tokens": 2.25e-05,
        "cache_creation_input_token_cost_above_200k_tokens": 7.5e-06,
        "cache_read_input_token_cost_above_200k_tokens": 6e-07,
        "max_output_tokens": 64000.0, "litellm_provider": "anthropic", "mode": "chat"},
    "gemini/gemini-2.5-pro": {"input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05,
                              "input_cost_per_token_above_200k_tokens": 2.5e-06,
                              "output_cost_per_token_above_200k_tokens": 1.5e-05,
                              "litellm_provider": "gemini", "mode": "chat"},
    "command-r7b-12-2024": {"input_cost_per_token": 3.75e-08, "output_cost_per_token": 1.5e-07,
                            "max_tokens": 4000, "max_output_tokens": "4k",
                            "litellm_provider": "cohere_chat", "mode": "chat"},
    "text-embedding-3-small": {"input_cost_per_token": 2e-08, "output_cost_per_token": 0,
                               "litellm_provider": "openai", "mode": "embedding"},
    "bedrock/some-model": {"input_cost_per_token": 1e-06, "output_cost_per_token": 1e-06,
                           "litellm_provider": "bedrock", "mode": "chat"},
    "groq/no-output-price": {"input_cost_per_token": 1e-06, "litellm_provider": "groq", "mode": "chat"},
}


def test_import_litellm_catalog(tmp_path):
    src = tmp_path / "model_prices_and_context_window.json"
    src.write_text(json.dumps(LITELLM))
    out = tmp_path / "imported.toml"
    r = CliRunner().invoke(cli, ["pricing", "import", str(src), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "wrote 4 models" in r.output and "groq/no-output-price" in r.output
    text = out.read_text()
    assert "embedding" not in text and "bedrock" not in text and "sample_spec" not in text
    book = PriceBook.from_file(out)
    gpt = book.price("openai", "gpt-4o")
    assert (gpt.input, gpt.cached_input, gpt.output) == (D("2.5"), D("1.25"), D("10"))
    assert book.price("cohere", "command-r7b-12-2024").input == D("0.0375")   # 3.75e-08 x 1M, exact
    claude = book.price("anthropic", "claude-sonnet-4-5-20250929")
    assert claude.cache_write == D("3.75") and claude.cached_input == D("0.3")
    (tier,) = claude.tiers
    assert (tier.above_prompt_tokens, tier.input, tier.output, tier.cache_write, tier.cached_input) == \
        (200000, D("6"), D("22.5"), D("7.5"), D("0.6"))
    assert book.price("google", "gemini-2.5-pro").tiers[0].output == D("15")  # gemini/ prefix -> google
    # LiteLLM's max_output_tokens (never its ambiguous max_tokens); a bad value is noted, prices kept
    assert gpt.max_output_tokens == 16384 and claude.max_output_tokens == 64000
    assert "max_output_tokens = 16384" in text and "max_output_tokens = 64000\n" in text
    assert book.price("cohere", "command-r7b-12-2024").max_output_tokens is None
    assert book.price("google", "gemini-2.5-pro").max_output_tokens is None
    assert "command-r7b-12-2024: max_output_tokens '4k'" in r.output


def test_import_to_stdout_and_bad_json(tmp_path):
    src = tmp_path / "m.json"
    src.write_text(json.dumps({"gpt-4o": LITELLM["gpt-4o"]}))
    r = CliRunner().invoke(cli, ["pricing", "import", str(src)])
    assert r.exit_code == 0 and '[openai."gpt-4o"]' in r.output and "input = 2.5" in r.output
    src.write_text("{not json")
    r = run("import", str(src))
    assert r.exit_code == 1 and "not valid JSON" in r.output


def test_diff(tmp_path):
    old, new = tmp_path / "old.toml", tmp_path / "new.toml"
    old.write_text('[openai."gpt-4o"]\ninput = 5.00\noutput = 15.00\n\n[openai."gone"]\ninput = 1\noutput = 1\n')
    new.write_text('[openai."gpt-4o"]\ninput = 2.50\noutput = 15.00\n\n[openai."fresh"]\ninput = 1\noutput = 1\n')
    r = run("diff", str(old), str(new), "--format", "json")
    changes = json.loads(r.output)["changes"]
    assert {"change": "changed", "model": "openai/gpt-4o", "key": "input", "old": "5.00", "new": "2.50",
            "delta": "-50.0%"} in changes
    kinds = {(c["change"], c["model"]) for c in changes}
    assert ("added", "openai/fresh") in kinds and ("removed", "openai/gone") in kinds
    assert ("changed", "openai/gpt-4o") in kinds and len(changes) == 3
    table = run("diff", str(old), str(new)).output
    assert "-50.0%" in table
    assert run("diff", "bundled", "bundled").output.strip() == "no differences"


def test_diff_shows_a_changed_max_output(tmp_path):
    old, new = tmp_path / "old.toml", tmp_path / "new.toml"
    old.write_text('[acme."m"]\ninput = 1\noutput = 2\nmax_output_tokens = 4096\n')
    new.write_text('[acme."m"]\ninput = 1\noutput = 2\nmax_output_tokens = 8192\n')
    changes = json.loads(run("diff", str(old), str(new), "--format", "json").output)["changes"]
    assert changes == [{"change": "changed", "model": "acme/m", "key": "max_output_tokens", "old": 4096,
                        "new": 8192, "delta": ""}]


def test_diff_malformed_file_names_file_and_key(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[openai."gpt-4o"]\ninptu = 1\n')
    r = run("diff", "bundled", str(bad))
    assert r.exit_code == 1 and "bad.toml" in r.output and 'openai."gpt-4o".inptu' in r.output
