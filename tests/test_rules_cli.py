"""``unillm rules explain`` and ``unillm rules lint`` through click's CliRunner."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from unillm.cli import cli

CONFIG = """
timezone = "Europe/Paris"
tags = { service = "bot" }

[[rules]]
name = "short prompts go to mini"
when = { model = "gpt-4o", prompt_tokens_below = 100, keywords_none = ["code", "analysis"] }
use = "gpt-4o-mini"

[[rules]]
name = "night cap"
mode = "shadow"
when = { time = "22:00-06:00", tags = { user = "*" } }
max_tokens = 200

[[fallbacks]]
model = "gpt-4o"
then = ["claude-sonnet-4-5"]
"""


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "unillm.toml"
    path.write_text(text)
    return str(path)


def run(*args: str):
    return CliRunner().invoke(cli, ["rules", *args], catch_exceptions=False)


def test_explain_text_shows_conditions_and_resulting_request(tmp_path):
    cfg = write(tmp_path, CONFIG)
    res = run("explain", "--config", cfg, "--model", "gpt-4o", "--prompt", "What is the capital of France?",
              "--tags", "user=a", "--at", "2026-11-22T23:30")
    assert res.exit_code == 0, res.output
    out = res.output
    assert "call: gpt-4o (openai/gpt-4o) at 2026-11-22 23:30 CET, tags service=bot, user=a" in out
    assert 'rules[0] ("short prompts go to mini") [apply]: applied' in out
    assert "held   prompt_tokens_below" in out
    assert re.search(r'held   time +  = "22:00-06:00 Europe/Paris"  \(actual: "23:30 CET"\)', out)
    assert 'model: "gpt-4o" -> "gpt-4o-mini"' in out
    assert "shadow: 'night cap' would have: max_tokens = 200" in out


def test_explain_shows_the_failed_condition(tmp_path):
    cfg = write(tmp_path, CONFIG)
    res = run("explain", "--config", cfg, "--model", "gpt-4o", "--prompt", "Review this code", "--at", "12:00")
    assert res.exit_code == 0, res.output
    assert re.search(r'FAILED keywords_none +  = \["code", "analysis"\]  \(actual: \["code"\]\)', res.output)
    assert "FAILED tags" in res.output  # no user tag
    assert "result: no rule applies" in res.output


def test_explain_json(tmp_path):
    cfg = write(tmp_path, CONFIG)
    res = run("explain", "--config", cfg, "--model", "gpt-4o", "--prompt", "hi", "--at", "2026-07-01T12:00",
              "--tokens", "150", "--format", "json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["at"] == "2026-07-01T12:00:00+02:00"
    first = data["rules"][0]
    assert first["matched"] is False
    assert {"name": "prompt_tokens_below", "expected": 100, "actual": 150, "held": False} in first["conditions"]
    assert data["decision"] == {"mode": "apply"} and data["changes"] == {}


@pytest.mark.parametrize("args, message", [
    (["--model", "nosuch-model"], "unknown model 'nosuch-model'"),
    (["--model", "gpt-4o", "--at", "tomorrow"], "use HH:MM or YYYY-MM-DDTHH:MM"),
    (["--model", "gpt-4o", "--tags", "user"], "'user' is not KEY=VALUE"),
])
def test_explain_user_errors_are_one_line(tmp_path, args, message):
    cfg = write(tmp_path, CONFIG)
    res = run("explain", "--config", cfg, "--prompt", "hi", *args)
    assert res.exit_code != 0
    assert message in res.output and "Traceback" not in res.output


def test_explain_bad_rule_names_file_rule_and_key(tmp_path):
    cfg = write(tmp_path, '[[rules]]\nname = "r"\nwhen = { prompt_tokens_below = "abc" }\nuse = "gpt-4o-mini"\n')
    res = run("explain", "--config", cfg, "--model", "gpt-4o", "--prompt", "hi")
    assert res.exit_code == 1
    assert f'Error: {cfg}: rules[0] ("r").when.prompt_tokens_below: Input should be a valid integer' in res.output


def test_missing_config_is_one_line(tmp_path):
    res = run("lint", "--config", str(tmp_path / "nope.toml"))
    assert res.exit_code == 1 and "file not found" in res.output


def test_lint_clean_config_exits_zero(tmp_path):
    res = run("lint", "--config", write(tmp_path, CONFIG))
    assert res.exit_code == 0, res.output
    assert "2 rules, 1 fallback: no problems found" in res.output


def test_lint_reports_findings_and_exits_one(tmp_path):
    bad = CONFIG + """
[[rules]]
name = "broken"
when = { regex = "(x" }
use = "gpt-4o-mini"

[[rules]]
name = "typo"
use = "nosuch-model"

[[fallbacks]]
model = "claude-sonnet-4-5"
then = ["gpt-4o"]
"""
    res = run("lint", "--config", write(tmp_path, bad))
    assert res.exit_code == 1
    lines = res.output.splitlines()
    assert lines[0].startswith('error: rules[2] ("broken").when.regex: invalid regular expression')
    assert any(line.startswith('error: rules[3] ("typo").use: unknown model') for line in lines)
    assert any("fallback cycle: gpt-4o -> claude-sonnet-4-5 -> gpt-4o" in line for line in lines)
    assert lines[-1].endswith("3 errors, 0 warnings")


def test_lint_warnings_alone_exit_zero_and_json(tmp_path):
    text = '[[rules]]\nname = "all"\nmax_tokens = 10\n\n[[rules]]\nname = "later"\nuse = "gpt-4o-mini"\n'
    res = run("lint", "--config", write(tmp_path, text), "--format", "json")
    assert res.exit_code == 0, res.output
    [f] = json.loads(res.output)
    assert f["level"] == "warning" and f["where"] == 'rules[1] ("later").when' and "never applies" in f["message"]
