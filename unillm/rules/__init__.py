"""Optimization rules: ``[[rules]]`` from unillm.toml (or `Rule` objects) that swap
models, cap tokens, set parameters, deny calls or override the cache TTL.

::

    rules = RuleSet(settings.rules, timezone=settings.timezone)   # Settings validated them
    # (or RuleSet.from_config(tables, source=...) for tables not read through Settings)
    decision = rules.evaluate(RuleContext(request, ref, tags=tags, now=clock(),
                                          prompt_tokens=lambda: count(request)))
    decision.raise_if_denied()
    request = decision.apply(request)   # then re-resolve decision.use

Modules: `spec` (the rule shape, validated once), `conditions` (the per-call
checks), `engine` (ordering, decisions, explain), `lint` (static checks).
"""

from __future__ import annotations

from .conditions import RuleContext
from .engine import EMPTY, ConditionTrace, Decision, RuleSet, RuleTrace, explain_dict, format_explain
from .lint import Finding, lint
from .spec import Rule, When, parse_rule

__all__ = ["Rule", "When", "RuleSet", "RuleContext", "Decision", "EMPTY", "RuleTrace", "ConditionTrace",
           "format_explain", "explain_dict", "Finding", "lint", "parse_rule"]
