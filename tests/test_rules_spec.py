"""Rule validation: strict shapes, compiled once, errors naming file, rule index/name, key and value."""

from __future__ import annotations

from decimal import Decimal

import pytest

from unillm.errors import ConfigError
from unillm.rules import Rule, RuleSet


def load_one(when: dict | None = None, **rule):
    table = {"name": "r", "use": "gpt-4o-mini", **rule}
    if when is not None:
        table["when"] = when
    return RuleSet.from_config([table], source="unillm.toml")


def test_error_names_file_index_name_key_and_value():
    rules = [{"name": "a", "use": "gpt-4o-mini"}, {"name": "b", "use": "gpt-4o-mini"},
             {"name": "short prompts go to mini", "when": {"prompt_tokens_below": "abc"}, "use": "gpt-4o-mini"}]
    with pytest.raises(ConfigError) as info:
        RuleSet.from_config(rules, source="unillm.toml")
    assert str(info.value) == ('unillm.toml: rules[2] ("short prompts go to mini").when.prompt_tokens_below: '
                               "Input should be a valid integer (got 'abc')")
    assert info.value.file == "unillm.toml"
    assert info.value.value == "abc"


@pytest.mark.parametrize("when, key, words", [
    ({"regex": "(unclosed"}, "when.regex", "invalid regular expression"),
    ({"time": "25:00-06:00"}, "when.time", "invalid hour"),
    ({"time": "10pm-6am"}, "when.time", "HH:MM-HH:MM"),
    ({"time": "08:00-08:00"}, "when.time", "empty"),
    ({"time": "22:00-06:00", "timezone": "Europe/Pariss"}, "when.timezone", "unknown timezone"),
    ({"weekdays": ["mon", "funday"]}, "when.weekdays", "unknown weekday 'funday'"),
    ({"modle": "gpt-4o"}, "when.modle", "unknown key; did you mean 'model'?"),
    ({"has_tools": "yes"}, "when.has_tools", "valid boolean"),
    ({"keywords_any": []}, "when.keywords_any", "at least one"),
    ({"match_on": "everything"}, "when.match_on", "'last_user' or 'conversation'"),
    ({"prompt_tokens_above": 100, "prompt_tokens_below": 50}, "when", "no prompt can match"),
    ({"budget_used_above": -0.1}, "when.budget_used_above", "greater than or equal to 0"),
])
def test_bad_conditions_are_config_errors(when, key, words):
    with pytest.raises(ConfigError) as info:
        load_one(when)
    assert info.value.key == f'rules[0] ("r").{key}'
    assert words in str(info.value)


@pytest.mark.parametrize("rule, key, words", [
    ({"set": {"temperature": 5}}, "set", "less than or equal to 2 (got 5)"),
    ({"set": {"max_tokens": 5}}, "set", "use the `max_tokens` action"),
    ({"set": {"temprature": 0}}, "set", "did you mean 'temperature'?"),
    ({"max_tokens": 0}, "max_tokens", "greater than 0"),
    ({"mode": "dry-run"}, "mode", "'apply' or 'shadow'"),
    ({"cache_ttl": -1}, "cache_ttl", "greater than or equal to 0"),
    ({"deny": "no", "use": "gpt-4o-mini"}, "", "cannot be combined"),
    ({"use": None}, "", "a rule needs an action"),
    ({"priority": "high"}, "priority", "valid integer"),
])
def test_bad_actions_are_config_errors(rule, key, words):
    table = {"name": "r", "use": "gpt-4o-mini", **rule}
    table = {k: v for k, v in table.items() if v is not None}
    with pytest.raises(ConfigError) as info:
        RuleSet.from_config([table], source="unillm.toml")
    assert info.value.key == 'rules[0] ("r")' + (f".{key}" if key else "")
    assert words in str(info.value)


def test_missing_name_and_duplicates():
    with pytest.raises(ConfigError, match=r"rules\[1\]\.name: Field required"):
        RuleSet.from_config([{"name": "a", "use": "x"}, {"use": "x"}], source="unillm.toml")
    with pytest.raises(ConfigError, match=r'rules\[1\] \("a"\)\.name: duplicate rule name; rules\[0\] \("a"\)'):
        RuleSet.from_config([{"name": "a", "use": "x"}, {"name": "a", "use": "y"}], source="unillm.toml")


def test_rule_objects_validate_on_construction_and_mix_with_tables():
    with pytest.raises(ConfigError, match=r'Rule\(\.\.\.\): rules \("z"\)\.when\.regex: invalid regular'):
        Rule(name="z", when={"regex": "("}, use="gpt-4o-mini")
    rs = RuleSet.from_config([Rule(name="py", use="gpt-4o-mini"), {"name": "toml", "max_tokens": 10}])
    assert [r.name for r in rs] == ["py", "toml"]


def test_invalid_default_timezone_is_a_config_error():
    with pytest.raises(ConfigError, match="unillm.toml: timezone: unknown timezone 'Moon/Base'"):
        RuleSet.from_config([], source="unillm.toml", timezone="Moon/Base")


def test_money_stays_decimal_and_set_values_are_normalised():
    rs = load_one({"estimated_cost_above": 0.05}, set={"stop": "END"})
    rule = rs.rules[0]
    assert rule.when.estimated_cost_above == Decimal("0.05")  # not 0.05000000000000000277
    assert rule.set == {"stop": ["END"]}


def test_regex_and_keywords_compiled_once_at_load():
    rs = load_one({"regex": r"\bSELECT\b", "keywords_any": ["sql"]})
    when = rs.rules[0].when
    assert when._regex.pattern == r"\bSELECT\b"
    assert when._any_re.search("some SQL here") and not when._any_re.search("sqlite")


def test_weekday_names_accept_long_forms():
    rs = load_one({"weekdays": ["Monday", "fri"]})
    assert rs.rules[0].when.weekdays == ["mon", "fri"]


def test_rules_must_be_a_list_of_tables():
    with pytest.raises(ConfigError, match=r"unillm.toml: rules: must be a list of rule tables"):
        RuleSet.from_config({"name": "x", "use": "y"}, source="unillm.toml")
    with pytest.raises(ConfigError, match=r"unillm.toml: rules\[0\]: a rule must be a table \(got str\)"):
        RuleSet.from_config(["x"], source="unillm.toml")
