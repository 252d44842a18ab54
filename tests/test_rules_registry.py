"""One registry of rule conditions: every `When` field is a condition with a builder (or a
modifier of others), so a field cannot be accepted and then silently ignored; explain
simulates every condition, streams included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner

from unillm import Client, errors
from unillm.cli import cli
from unillm.rules import RuleSet
from unillm.rules.conditions import CONDITIONS, MODIFIERS, compile_when
from unillm.rules.spec import When

from .test_rules_helpers import context

#: one value for each condition; a new `When` condition needs one here (the test says so)
SAMPLES: dict[str, Any] = {
    "model": "gpt-4o*", "provider": "openai", "tags": {"team": "*"}, "has_tools": True,
    "has_images": False, "json_output": True, "stream": True, "time": "09:00-17:00",
    "weekdays": ["mon"], "keywords_any": ["code"], "keywords_none": ["secret"], "regex": r"\d+",
    "prompt_tokens_above": 10, "prompt_tokens_below": 100, "budget_used_above": 0.5,
    "estimated_cost_above": "0.01", "kind": "embed",
}


def test_every_when_field_is_a_condition_or_a_modifier() -> None:
    fields = set(When.model_fields)
    assert not set(CONDITIONS) & MODIFIERS
    assert set(CONDITIONS) | MODIFIERS == fields, "a When field with no builder would be ignored"


@pytest.mark.parametrize("name", sorted(CONDITIONS))
def test_each_condition_field_builds_its_condition(name: str) -> None:
    assert set(SAMPLES) == set(CONDITIONS), "add a sample for the new condition"
    when = When.model_validate({name: SAMPLES[name]})
    assert [c.name for c in compile_when(when, ZoneInfo("UTC"))] == [name]


def test_an_empty_when_has_no_conditions() -> None:
    assert compile_when(When(), ZoneInfo("UTC")) == ()


STREAMS = {"name": "no streams", "deny": "streams are off", "when": {"stream": True}}


def test_a_stream_condition_holds_only_for_streams() -> None:
    rs = RuleSet.from_config([STREAMS])
    assert rs.evaluate(context(stream=True)).rule == "no streams"
    assert rs.evaluate(context()).rule is None
    (trace,) = rs.explain(context(stream=True))
    assert [(c.name, c.expected, c.actual, c.held) for c in trace.conditions] == [
        ("stream", True, True, True)]


def test_chat_applies_stream_rules_and_explain_simulates_them() -> None:
    client = Client(rules=[STREAMS], ledger="off", providers={"openai": {"api_key": "k"}})
    messages = [{"role": "user", "content": "hi"}]
    with pytest.raises(errors.RuleDeniedError):
        client.chat("gpt-4o", messages, stream=True)
    assert client.explain("gpt-4o", messages)["decision"] == {"mode": "apply"}
    assert client.explain("gpt-4o", messages, stream=True)["decision"]["deny"] == "streams are off"
    client.close()


def test_the_cli_explains_a_stream(tmp_path: Path) -> None:
    cfg = tmp_path / "unillm.toml"
    cfg.write_text('[[rules]]\nname = "no streams"\ndeny = "off"\nwhen = { stream = true }\n')
    args = ["rules", "explain", "--config", str(cfg), "--model", "gpt-4o", "--prompt", "hi",
            "--format", "json"]
    plain = json.loads(CliRunner().invoke(cli, args, catch_exceptions=False).output)
    streamed = json.loads(CliRunner().invoke(cli, [*args, "--stream"], catch_exceptions=False).output)
    assert plain["rules"][0]["matched"] is False
    assert streamed["rules"][0]["matched"] is True and streamed["decision"]["deny"] == "off"
