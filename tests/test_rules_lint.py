"""lint: unknown and unpriced targets, invalid rules, shadowed rules, fallback cycles."""

from __future__ import annotations

import pytest

from unillm.config import FallbackSpec
from unillm.rules import RuleSet, lint

from .test_rules_helpers import RESOLVER

pricing = pytest.importorskip("unillm.pricing", reason="unillm.pricing (PriceBook) is not written yet")
BOOK = pricing.PriceBook.load()


def run(rules=(), fallbacks=(), **kw):
    return lint(list(rules), list(fallbacks), RESOLVER, BOOK, **kw)


def test_clean_config_has_no_findings():
    rules = [{"name": "mini", "use": "gpt-4o-mini", "when": {"model": "gpt-4o"}}]
    assert run(rules, [FallbackSpec(model="gpt-4o", then=["anthropic/claude-sonnet-4-5"])]) == []


def test_unknown_target():
    [f] = run([{"name": "typo", "use": "nosuch-model"}])
    assert (f.level, f.index, f.rule, f.key) == ("error", 0, "typo", "use")
    assert "unknown model 'nosuch-model'" in f.message
    assert str(f).startswith('error: rules[0] ("typo").use: unknown model')


def test_unpriced_target_is_an_error_or_a_warning_per_on_missing_price():
    rules = [{"name": "typo", "use": "gpt-4o-mni"}]  # resolves to openai, has no price
    [f] = run(rules)
    assert f.level == "error" and "no price for openai/gpt-4o-mni" in f.message and "gpt-4o-mini" in f.message
    [w] = run(rules, on_missing_price="record")
    assert w.level == "warning"


def test_invalid_rules_are_findings_and_the_rest_is_still_checked():
    rules = [{"name": "bad regex", "use": "gpt-4o-mini", "when": {"regex": "(oops"}},
             {"name": "bad window", "use": "gpt-4o-mini", "when": {"time": "22:00-30:00"}},
             {"name": "bad target", "use": "nosuch-model"}]
    findings = run(rules)
    assert [(f.index, f.rule, f.key) for f in findings] == [
        (0, "bad regex", "when.regex"), (1, "bad window", "when.time"), (2, "bad target", "use")]
    assert "invalid regular expression" in findings[0].message
    assert "invalid hour" in findings[1].message
    assert all(f.level == "error" for f in findings)


def test_duplicate_names_are_errors():
    [f] = run([{"name": "a", "use": "gpt-4o-mini"}, {"name": "a", "use": "gpt-4o-mini", "when": {"model": "x"}}])
    assert (f.level, f.index, f.key) == ("error", 1, "name") and "duplicate" in f.message


def test_shadowed_by_catch_all_or_identical_conditions():
    rules = [{"name": "same-1", "use": "gpt-4o-mini", "when": {"model": "gpt-4o", "keywords_none": ["code"]}},
             {"name": "same-2", "use": "gpt-4.1-mini", "when": {"keywords_none": ["code"], "model": ["gpt-4o"]}},
             {"name": "narrower", "use": "gpt-4.1-mini", "when": {"model": "gpt-4o"}},
             {"name": "catch-all", "max_tokens": 100},
             {"name": "after catch-all", "use": "gpt-4o-mini", "when": {"model": "claude-*"}},
             {"name": "shadow after", "mode": "shadow", "use": "gpt-4o-mini"}]
    findings = run(rules)
    assert [(f.level, f.rule) for f in findings] == [("warning", "same-2"), ("warning", "after catch-all")]
    assert 'rules[0] ("same-1") comes first and has the same conditions' in findings[0].message
    assert 'rules[3] ("catch-all") comes first and has no conditions' in findings[1].message


def test_shadowing_follows_priority_not_file_order():
    rules = [{"name": "specific", "use": "gpt-4o-mini", "when": {"model": "gpt-4o"}},
             {"name": "catch-all", "max_tokens": 100, "priority": -1}]
    [f] = run(rules)
    assert f.rule == "specific" and "catch-all" in f.message


def test_fallback_cycle_through_aliases_and_provider_prefixes():
    fallbacks = [{"model": "gpt-4o", "then": ["claude-sonnet-4-5"]},
                 {"model": "anthropic/claude-sonnet-4-5", "then": ["gemini-2.5-pro"]},
                 {"model": "gemini-2.5-pro", "then": ["openai/gpt-4o"]}]
    findings = run(fallbacks=fallbacks)
    [f] = [f for f in findings if "cycle" in f.message]
    assert f.level == "error"
    assert f.message == "fallback cycle: gpt-4o -> claude-sonnet-4-5 -> gemini-2.5-pro -> gpt-4o"


def test_fallback_targets_are_checked_and_chains_are_fine():
    fallbacks = [FallbackSpec(model="gpt-4o", then=["gpt-4o-mini", "nosuch-model"]),
                 FallbackSpec(model="gpt-4o-mini", then=["claude-haiku-4-5"])]
    [f] = run(fallbacks=fallbacks)
    assert (f.level, f.key) == ("error", "fallbacks[0].then[1]") and "unknown model" in f.message
    assert str(f).startswith("error: fallbacks[0].then[1]: unknown model")


def test_self_fallback_is_a_cycle():
    [f] = run(fallbacks=[{"model": "gpt-4o", "then": ["openai/gpt-4o"]}])
    assert "cycle" in f.message


def test_lint_accepts_a_loaded_rule_set():
    rs = RuleSet.from_config([{"name": "x", "use": "nosuch-model"}])
    [f] = lint(rs, [], RESOLVER, BOOK)
    assert f.rule == "x" and f.level == "error"
