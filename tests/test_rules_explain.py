"""explain: every rule, every condition with expected and actual values, and the resulting request."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

from unillm.rules import RuleSet, explain_dict, format_explain

from .test_rules_helpers import Counter, context, request

RULES = [
    {"name": "short prompts go to mini", "use": "gpt-4o-mini",
     "when": {"model": "gpt-4o", "prompt_tokens_below": 100, "keywords_none": ["code", "analysis"]}},
    {"name": "night shadow", "mode": "shadow", "max_tokens": 200, "when": {"time": "22:00-06:00"}},
    {"name": "catch-all", "set": {"temperature": 0}},
    {"name": "pricey", "deny": "too expensive", "when": {"estimated_cost_above": 0.5}},
]


def test_explain_reports_each_condition_and_outcome():
    rs = RuleSet.from_config(RULES)
    ctx = context("please review my code", tokens=12, cost=Decimal("0.01"),
                  now=datetime(2026, 11, 18, 23, 30, tzinfo=timezone.utc))
    traces = rs.explain(ctx)
    assert [(t.name, t.matched, t.outcome) for t in traces] == [
        ("short prompts go to mini", False, "no match"),
        ("night shadow", True, "shadow"),
        ("catch-all", True, "applied"),
        ("pricey", False, "no match"),
    ]
    conds = {c.name: c for c in traces[0].conditions}
    assert (conds["model"].held, conds["prompt_tokens_below"].held) == (True, True)
    assert conds["prompt_tokens_below"].actual == 12
    assert (conds["keywords_none"].held, conds["keywords_none"].actual) == (False, ["code"])
    assert traces[1].conditions[0].actual == "23:30 UTC"
    assert traces[3].conditions[0].actual == Decimal("0.01")


def test_explain_agrees_with_evaluate_and_marks_preempted_rules():
    rs = RuleSet.from_config(RULES)
    ctx = context("what is the capital of France?", tokens=12, cost=Decimal("0.9"))
    traces, decision = rs.explain(ctx), rs.evaluate(ctx)
    applied = [t.name for t in traces if t.outcome == "applied"]
    assert applied == [decision.rule] == ["short prompts go to mini"]
    assert [t.outcome for t in traces[2:]] == ["preempted by 'short prompts go to mini'"] * 2


def test_explain_evaluates_every_condition_even_after_one_failed():
    counter = Counter(500)
    rs = RuleSet.from_config(RULES[:1])
    trace = rs.explain(context(model="gpt-4o-mini", tokens=counter))[0]
    assert [c.name for c in trace.conditions] == ["model", "keywords_none", "prompt_tokens_below"]
    assert [c.held for c in trace.conditions] == [False, True, False]
    assert counter.calls == 1


def test_format_explain_text_shows_why_and_the_resulting_request():
    rs = RuleSet.from_config(RULES)
    ctx = context("what is the capital of France?", tokens=12, max_tokens=1000,
                  now=datetime(2026, 11, 18, 23, 30, tzinfo=timezone.utc))
    text = format_explain(rs.explain(ctx), rs.evaluate(ctx), request(max_tokens=1000))
    assert 'rules[0] ("short prompts go to mini") [apply]: applied' in text
    assert 'held   prompt_tokens_below' in text and "(actual: 12)" in text
    assert 'FAILED estimated_cost_above' in text and "(actual: unknown)" in text
    assert "result: rule 'short prompts go to mini' applies" in text
    assert 'model: "gpt-4o" -> "gpt-4o-mini"' in text
    assert "shadow: 'night shadow' would have: max_tokens = 200" in text


def test_format_explain_without_a_match_or_rules():
    rs = RuleSet.from_config(RULES[:1])
    ctx = context("analysis please", tokens=5)
    assert "result: no rule applies; the request is sent unchanged" in format_explain(
        rs.explain(ctx), rs.evaluate(ctx))
    empty = RuleSet.from_config([])
    assert format_explain(empty.explain(ctx), empty.evaluate(ctx)).startswith("no rules configured")


def test_explain_dict_is_json_safe_and_keeps_money_exact():
    rs = RuleSet.from_config(RULES)
    ctx = context("hi", tokens=3, cost=Decimal("0.70000001"))
    data = explain_dict(rs.explain(ctx), rs.evaluate(ctx), request())
    text = json.dumps(data)
    pricey = json.loads(text)["rules"][3]
    assert pricey["conditions"][0] == {"name": "estimated_cost_above", "expected": "0.5",
                                       "actual": "0.70000001", "held": True}
    assert data["decision"]["rule"] == "short prompts go to mini"
    assert data["changes"] == {"model": "gpt-4o-mini"}
