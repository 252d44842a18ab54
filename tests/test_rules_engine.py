"""Rule evaluation: each condition and action, time windows with a fixed clock, shadow mode, priority."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

import pytest

from unillm.errors import RuleDeniedError
from unillm.rules import EMPTY, RuleContext, RuleSet
from unillm.tokens import count_prompt

from .test_rules_helpers import NOON, RESOLVER, Counter, context, request

UTC = timezone.utc


def rules(*tables, tz: str = "UTC") -> RuleSet:
    return RuleSet.from_config([{"name": f"r{i}", "use": "gpt-4o-mini", **t} for i, t in enumerate(tables)],
                               timezone=tz)


def fires(when: dict, ctx: RuleContext, tz: str = "UTC") -> bool:
    return rules({"when": when}, tz=tz).evaluate(ctx).rule == "r0"


# ── the classic cost rule, with real tiktoken counts ─────────────────────────

CLASSIC = [{"name": "short prompts go to mini", "use": "gpt-4o-mini",
            "when": {"model": "gpt-4o", "prompt_tokens_below": 100, "keywords_none": ["code", "analysis"]}}]


def classic(prompt: str, model: str = "gpt-4o"):
    req = request(prompt, model)
    ref = RESOLVER.resolve(model)
    ctx = RuleContext(req, ref, now=NOON, prompt_tokens=lambda: count_prompt(req, ref.model)[0])
    return RuleSet.from_config(CLASSIC).evaluate(ctx), req


def test_classic_rule_routes_short_plain_prompts_to_mini():
    decision, req = classic("What is the capital of France?")
    assert decision.rule == "short prompts go to mini"
    assert decision.apply(req).model == "gpt-4o-mini"


@pytest.mark.parametrize("prompt, model", [
    ("Please review this code for bugs.", "gpt-4o"),                      # keyword
    ("I need a quick ANALYSIS of this sentence.", "gpt-4o"),              # keyword, any case
    ("Tell me about the history of Rome. " * 20, "gpt-4o"),              # ~160 tokens
    ("What is the capital of France?", "gpt-4o-mini"),                    # another model
    ("What is the capital of France?", "claude-sonnet-4-5"),
])
def test_classic_rule_leaves_other_calls_alone(prompt, model):
    decision, req = classic(prompt, model)
    assert decision.rule is None and decision.apply(req) is req


def test_classic_rule_keywords_are_whole_words():
    # "codebase" and "analysiss" are not the words "code" / "analysis"
    assert classic("Where is the codebase hosted? No analysiss needed.")[0].rule == "short prompts go to mini"


# ── conditions ───────────────────────────────────────────────────────────────

@pytest.mark.parametrize("glob, model, expected", [
    ("gpt-4o*", "gpt-4o", True), ("gpt-4o*", "gpt-4o-mini", True), ("gpt-4o", "gpt-4o-mini", False),
    (["claude-*", "gemini-*"], "claude-sonnet-4-5", True), ("openai/gpt-4o", "gpt-4o", True),
    ("gpt-4o", "openai/gpt-4o", True), ("gpt-4o*", "claude-sonnet-4-5", False),
])
def test_model_globs(glob, model, expected):
    assert fires({"model": glob}, context(model=model)) is expected


def test_provider_glob():
    assert fires({"provider": "anthropic"}, context(model="claude-sonnet-4-5"))
    assert not fires({"provider": "anthropic"}, context(model="gpt-4o"))
    assert fires({"provider": ["google", "open*"]}, context(model="gpt-4o"))


def test_prompt_token_bounds_are_strict():
    assert fires({"prompt_tokens_above": 100}, context(tokens=101))
    assert not fires({"prompt_tokens_above": 100}, context(tokens=100))
    assert fires({"prompt_tokens_below": 100}, context(tokens=99))
    assert not fires({"prompt_tokens_below": 100}, context(tokens=100))
    assert not fires({"prompt_tokens_below": 100}, context(tokens=None))  # no counter: cannot hold


def test_keywords_any_and_none_case_insensitive_whole_words():
    assert fires({"keywords_any": ["refund", "invoice"]}, context("Where is my INVOICE?"))
    assert not fires({"keywords_any": ["refund"]}, context("refunds are slow"))
    assert fires({"keywords_any": ["Refund"]}, context("a refund, please"))
    assert fires({"keywords_any": ["machine learning"]}, context("Is Machine Learning hard?"))
    assert fires({"keywords_any": ["c++"]}, context("is C++ hard?"))
    assert not fires({"keywords_none": ["urgent"]}, context("this is Urgent!"))
    assert fires({"keywords_none": ["urgent"]}, context("not urgently"))


def test_regex_and_match_on():
    convo = [{"role": "system", "content": "You are a SQL assistant."},
             {"role": "user", "content": "SELECT * FROM t"},
             {"role": "assistant", "content": "ok"},
             {"role": "user", "content": "thanks"}]
    assert not fires({"regex": r"SELECT \*"}, context(messages=convo))  # latest user message only
    assert fires({"regex": r"SELECT \*", "match_on": "conversation"}, context(messages=convo))
    assert fires({"keywords_any": ["sql"], "match_on": "conversation"}, context(messages=convo))
    assert fires({"regex": r"^thanks$"}, context(messages=convo))


def test_tags_exact_and_present():
    assert fires({"tags": {"project": "bot"}}, context(tags={"project": "bot", "user": "u1"}))
    assert not fires({"tags": {"project": "bot"}}, context(tags={"project": "web"}))
    assert fires({"tags": {"user": "*"}}, context(tags={"user": "anyone"}))
    assert not fires({"tags": {"user": "*"}}, context(tags={}))
    assert not fires({"tags": {"project": "bot", "user": "u2"}}, context(tags={"project": "bot", "user": "u1"}))


def test_request_shape_flags():
    tools = [{"type": "function", "function": {"name": "f"}}]
    image = [{"role": "user", "content": [{"type": "text", "text": "what is this"},
                                          {"type": "image_url", "image_url": {"url": "https://x/y.png"}}]}]
    assert fires({"has_tools": True}, context(tools=tools))
    assert not fires({"has_tools": True}, context())
    assert fires({"has_tools": False}, context())
    assert fires({"has_images": True}, context(messages=image))
    assert not fires({"has_images": True}, context())
    assert fires({"json_output": True}, context(response_format={"type": "json_object"}))
    assert not fires({"json_output": True}, context(response_format={"type": "text"}))
    assert fires({"json_output": False}, context())


def test_budget_used_above_and_estimated_cost_above():
    assert fires({"budget_used_above": 0.8}, context(budget=0.81))
    assert not fires({"budget_used_above": 0.8}, context(budget=0.8))
    assert not fires({"budget_used_above": 0.8}, context(budget=None))  # no budget matches
    assert fires({"estimated_cost_above": 0.05}, context(cost=Decimal("0.0500001")))
    assert not fires({"estimated_cost_above": 0.05}, context(cost=Decimal("0.05")))
    assert not fires({"estimated_cost_above": 0.05}, context(cost=None))


def test_lazy_values_are_computed_only_when_needed_and_once():
    counter = Counter(50)
    rs = rules({"when": {"model": "claude-*", "prompt_tokens_below": 100}},
               {"when": {"prompt_tokens_above": 1000}},
               {"when": {"prompt_tokens_below": 10}},
               {"when": {"keywords_any": ["nothing-here"], "prompt_tokens_below": 100}})
    assert rs.needs == {"prompt_tokens"}
    assert rs.evaluate(context(tokens=counter)).rule is None
    assert counter.calls == 1  # r0 failed on the model, r1 and r2 shared one count, r3 on the keyword
    cheap = Counter(5)
    assert rules({"when": {"model": "gpt-4o"}}).evaluate(context(tokens=cheap)).rule == "r0"
    assert cheap.calls == 0


def test_naive_clock_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        RuleContext(request(), RESOLVER.resolve("gpt-4o"), now=datetime(2026, 1, 1, 12, 0))


# ── time windows, fixed clock ────────────────────────────────────────────────

@pytest.mark.parametrize("hh, mm, inside", [
    (21, 59, False), (22, 0, True), (23, 30, True), (0, 0, True), (5, 59, True), (6, 0, False), (12, 0, False),
])
def test_window_across_midnight(hh, mm, inside):
    now = datetime(2026, 11, 18, hh, mm, tzinfo=UTC)
    assert fires({"time": "22:00-06:00"}, context(now=now)) is inside


def test_daytime_window_and_timezone_conversion():
    when = {"time": "09:00-17:00", "timezone": "America/New_York"}
    assert fires(when, context(now=datetime(2026, 11, 18, 14, 0, tzinfo=UTC)))       # 09:00 EST
    assert not fires(when, context(now=datetime(2026, 11, 18, 13, 59, tzinfo=UTC)))  # 08:59 EST
    assert not fires(when, context(now=datetime(2026, 11, 18, 22, 0, tzinfo=UTC)))   # 17:00 EST


def test_client_default_timezone_applies_when_rule_has_none():
    now = datetime(2026, 11, 18, 22, 30, tzinfo=UTC)  # 23:30 in Paris (CET)
    assert fires({"time": "23:00-23:59"}, context(now=now), tz="Europe/Paris")
    assert not fires({"time": "23:00-23:59"}, context(now=now), tz="UTC")


def test_window_across_spring_dst_change():
    when = {"time": "22:00-06:00", "timezone": "Europe/Paris"}
    # the same UTC instant: 05:30 CET the day before the change, 06:30 CEST on the day
    assert fires(when, context(now=datetime(2026, 3, 28, 4, 30, tzinfo=UTC)))
    assert not fires(when, context(now=datetime(2026, 3, 29, 4, 30, tzinfo=UTC)))
    # the window containing the skipped hour (02:00-03:00 does not exist on 29 March)
    night = {"time": "01:00-03:00", "timezone": "Europe/Paris"}
    assert fires(night, context(now=datetime(2026, 3, 29, 0, 30, tzinfo=UTC)))       # 01:30 CET
    assert not fires(night, context(now=datetime(2026, 3, 29, 1, 30, tzinfo=UTC)))   # 03:30 CEST


def test_window_across_autumn_dst_change():
    when = {"time": "02:00-03:00", "timezone": "Europe/Paris"}
    # 02:30 happens twice on 25 October 2026: at 00:30 UTC (CEST) and at 01:30 UTC (CET)
    assert fires(when, context(now=datetime(2026, 10, 25, 0, 30, tzinfo=UTC)))
    assert fires(when, context(now=datetime(2026, 10, 25, 1, 30, tzinfo=UTC)))
    assert not fires(when, context(now=datetime(2026, 10, 25, 2, 30, tzinfo=UTC)))   # 03:30 CET


def test_weekdays_and_night_windows_belong_to_the_evening_they_start():
    when = {"time": "22:00-06:00", "weekdays": ["fri"]}
    assert fires(when, context(now=datetime(2026, 11, 20, 23, 0, tzinfo=UTC)))       # Fri 23:00
    assert fires(when, context(now=datetime(2026, 11, 21, 3, 0, tzinfo=UTC)))        # Sat 03:00, Friday night
    assert not fires(when, context(now=datetime(2026, 11, 20, 3, 0, tzinfo=UTC)))    # Fri 03:00, Thursday night
    assert fires({"weekdays": ["sat", "sun"]}, context(now=datetime(2026, 11, 22, 12, 0, tzinfo=UTC)))
    assert not fires({"weekdays": ["sat", "sun"]}, context(now=NOON))                # Wednesday


def test_weekdays_follow_the_rule_timezone():
    when = {"weekdays": ["thu"], "timezone": "Asia/Tokyo"}
    assert fires(when, context(now=datetime(2026, 11, 18, 16, 0, tzinfo=UTC)))       # Thu 01:00 in Tokyo


# ── actions ──────────────────────────────────────────────────────────────────

def test_actions_change_the_request():
    rs = RuleSet.from_config([{"name": "tame", "use": "gpt-4o-mini", "max_tokens": 256,
                               "set": {"temperature": 0, "seed": 7}, "cache_ttl": 3600}])
    req = request(max_tokens=1000, temperature=0.9)
    decision = rs.evaluate(context())
    assert (decision.rule, decision.cache_ttl) == ("tame", 3600)
    assert decision.changes(req) == {"model": "gpt-4o-mini", "max_tokens": 256, "temperature": 0, "seed": 7}
    out = decision.apply(req)
    assert (out.model, out.max_tokens, out.temperature, out.seed) == ("gpt-4o-mini", 256, 0, 7)
    assert req.model == "gpt-4o" and req.max_tokens == 1000  # the original is untouched


def test_max_tokens_is_a_cap_not_a_raise():
    decision = RuleSet.from_config([{"name": "cap", "max_tokens": 256}]).evaluate(context())
    assert decision.apply(request(max_tokens=100)).max_tokens == 100
    assert decision.apply(request()).max_tokens == 256


def test_deny_raises_rule_denied_error():
    rs = RuleSet.from_config([{"name": "no images at night", "deny": "images are batch-only at night",
                               "when": {"time": "22:00-06:00"}}])
    decision = rs.evaluate(context(now=datetime(2026, 11, 18, 23, 0, tzinfo=UTC)))
    with pytest.raises(RuleDeniedError) as info:
        decision.raise_if_denied()
    assert info.value.rule == "no images at night" and "batch-only" in str(info.value)
    rs.evaluate(context()).raise_if_denied()  # noon: allowed


# ── order, shadow mode, empty sets ───────────────────────────────────────────

def test_first_match_wins_in_file_order():
    rs = RuleSet.from_config([{"name": "a", "use": "gpt-4o-mini", "when": {"model": "claude-*"}},
                              {"name": "b", "use": "gpt-4.1-mini"},
                              {"name": "c", "use": "gpt-4.1-nano"}])
    assert rs.evaluate(context()).use == "gpt-4.1-mini"


def test_priority_orders_lower_first_ties_keep_file_order():
    rs = RuleSet.from_config([{"name": "a", "use": "m-a", "priority": 5}, {"name": "b", "use": "m-b"},
                              {"name": "c", "use": "m-c", "priority": -1}, {"name": "d", "use": "m-d", "priority": 5}])
    assert [r.name for r in rs] == ["c", "b", "a", "d"]
    assert rs.indexes == (2, 1, 0, 3)
    assert rs.evaluate(context()).rule == "c"


def test_shadow_rules_are_recorded_not_applied():
    rs = RuleSet.from_config([
        {"name": "try nano", "mode": "shadow", "use": "gpt-4.1-nano", "when": {"model": "gpt-4o"}},
        {"name": "mini", "use": "gpt-4o-mini"},
        {"name": "try deny", "mode": "shadow", "deny": "would block"},
        {"name": "never", "mode": "shadow", "use": "x", "when": {"model": "claude-*"}},
    ])
    req = request()
    decision = rs.evaluate(context())
    assert decision.rule == "mini" and decision.apply(req).model == "gpt-4o-mini"
    assert [(s.rule, s.mode, s.use, s.deny) for s in decision.shadow] == [
        ("try nano", "shadow", "gpt-4.1-nano", None), ("try deny", "shadow", None, "would block")]
    decision.raise_if_denied()  # a shadow deny never blocks
    assert decision.to_dict()["shadow"][0] == {"rule": "try nano", "mode": "shadow", "use": "gpt-4.1-nano"}


def test_shadow_only_match_changes_nothing():
    rs = RuleSet.from_config([{"name": "s", "mode": "shadow", "use": "gpt-4o-mini"}])
    req = request()
    decision = rs.evaluate(context())
    assert decision.rule is None and decision.apply(req) is req
    assert decision and [s.rule for s in decision.shadow] == ["s"]


def test_empty_rule_set_returns_the_shared_empty_decision():
    rs = RuleSet.from_config([])
    assert rs.evaluate(context()) is EMPTY
    assert not EMPTY and not rs
    assert RuleSet.from_config([{"name": "x", "use": "y", "when": {"model": "z"}}]).evaluate(context()) is EMPTY
