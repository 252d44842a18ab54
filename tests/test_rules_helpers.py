"""Shared builders for the rule tests: a real resolver, a request, a context with a fixed clock."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from unillm.profiles import Resolver, build_settings
from unillm.rules import RuleContext
from unillm.types import ChatRequest

RESOLVER = Resolver(build_settings())
NOON = datetime(2026, 11, 18, 12, 0, tzinfo=timezone.utc)  # a Wednesday


class Counter:
    """A prompt-token callable that remembers how often it was asked."""

    def __init__(self, value: int) -> None:
        self.value, self.calls = value, 0

    def __call__(self) -> int:
        self.calls += 1
        return self.value


def request(prompt: str = "hello there", model: str = "gpt-4o", **params: Any) -> ChatRequest:
    messages = params.pop("messages", None) or [{"role": "user", "content": prompt}]
    return ChatRequest(model=model, messages=messages, **params)


def context(prompt: str = "hello there", model: str = "gpt-4o", *, tags: dict[str, str] | None = None,
            now: datetime = NOON, tokens: Any = None, budget: Any = None, cost: Any = None,
            stream: bool = False, **params: Any) -> RuleContext:
    req = request(prompt, model, **params)
    return RuleContext(req, RESOLVER.resolve(model), tags=tags, now=now, stream=stream,
                       prompt_tokens=tokens if callable(tokens) or tokens is None else (lambda: tokens),
                       budget_used=budget if callable(budget) or budget is None else (lambda: budget),
                       estimated_cost=cost if callable(cost) or cost is None else (lambda: cost))
