"""Cost of rule evaluation per call: 50 rules must add at most 30 µs.

The rules mix every cheap condition (model and provider globs, tags, flags,
time windows with timezones and weekdays, keywords, regexes) and none matches,
so all 50 are evaluated on every call: the worst case without token counts.
Each timing builds a fresh RuleContext too, as the Client does per call.
Reports the median of repeated timeit runs. Usage: python bench/bench_rules.py [N]
"""

from __future__ import annotations

import statistics
import sys
import timeit
from datetime import datetime, timezone
from decimal import Decimal

from unillm.profiles import Resolver, build_settings
from unillm.rules import RuleContext, RuleSet
from unillm.types import ChatRequest

BUDGET_US = 30.0


def fifty_rules() -> list[dict]:
    """50 distinct rules (no two share a glob, keyword, regex or tag value)."""
    kinds = [
        lambda i: {"model": f"claude-{i}*", "prompt_tokens_below": 100},
        lambda i: {"model": [f"gemini-{i}*", f"mistral-{i}*"], "keywords_none": ["code"]},
        lambda i: {"provider": ["anthropic", f"vendor{i}"]},
        lambda i: {"tags": {"project": f"batch{i}"}, "time": "22:00-06:00", "timezone": "Europe/Paris"},
        lambda i: {"model": "gpt-4o", "keywords_any": [f"refund{i}", "invoice", "chargeback"]},
        lambda i: {"model": "gpt-4o*", "regex": rf"(?i)\bselect{i}\b.+\bfrom\b"},
        lambda i: {"has_tools": True, "model": "gpt-4o"},
        lambda i: {"json_output": True, "tags": {f"user{i}": "*"}},
        lambda i: {"weekdays": ["sat", "sun"], "time": f"00:{i:02d}-08:00"},
        lambda i: {"model": "gpt-4o", "tags": {"team": f"research{i}"}, "estimated_cost_above": Decimal("0.5")},
    ]
    return [{"name": f"rule {i}", "use": "gpt-4o-mini", "when": kinds[i % len(kinds)](i)} for i in range(50)]


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 20000
    resolver = Resolver(build_settings())
    request = ChatRequest(model="gpt-4o", messages=[
        {"role": "system", "content": "You are a helpful support agent."},
        {"role": "user", "content": "Where is my parcel? It was due on Monday and nothing came."}])
    ref = resolver.resolve("gpt-4o")
    now = datetime(2026, 11, 18, 12, 0, tzinfo=timezone.utc)  # a Wednesday noon: windows miss
    tags = {"project": "support", "user": "u42"}

    def tokens() -> int:  # must never be called: no rule gets that far
        raise AssertionError("prompt tokens were counted")

    for label, rules in (("empty rule set", []), ("50 rules, none matches", fifty_rules())):
        rs = RuleSet.from_config(rules)

        def call() -> None:
            rs.evaluate(RuleContext(request, ref, tags=tags, now=now, prompt_tokens=tokens))
        call()
        runs = timeit.repeat(call, number=n, repeat=7)
        per_call = statistics.median(runs) / n * 1e6
        verdict = "ok" if per_call <= BUDGET_US else f"OVER the {BUDGET_US:.0f} µs budget"
        print(f"{label:26} {per_call:7.2f} µs per call (median of 7 x {n})  {verdict}")


if __name__ == "__main__":
    main()
