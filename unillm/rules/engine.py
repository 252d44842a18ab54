"""`RuleSet`: rules in priority order, evaluated per call into a `Decision`.

Order: ``priority`` ascending (rules without one count as 0), ties in file
order. The first matching ``apply`` rule wins; every matching ``shadow`` rule is
collected too, wherever it sits, so the ledger can record what it would have
done. An empty rule set returns the shared `EMPTY` decision at once.

`RuleSet.explain` runs every condition of every rule (no short cut) and says
which held; `format_explain` renders that for people, `explain_dict` for JSON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo

from .. import errors
from ..types import ChatRequest
from .conditions import LAZY, Condition, RuleContext, compile_when
from .spec import Rule, _zone, parse_rule, rule_label

__all__ = ["RuleSet", "Decision", "EMPTY", "RuleTrace", "ConditionTrace", "format_explain", "explain_dict"]

_NO_SET: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Decision:
    """What the rules decided for one call. ``rule`` is None when no apply rule matched.

    ``max_tokens`` is a cap (the request keeps a smaller value); ``shadow`` holds
    one Decision per matching shadow rule: what it would have done.
    """

    rule: str | None = None
    use: str | None = None
    max_tokens: int | None = None
    set: Mapping[str, Any] = field(default_factory=lambda: _NO_SET)
    deny: str | None = None
    cache_ttl: int | None = None
    shadow: tuple[Decision, ...] = ()
    mode: Literal["apply", "shadow"] = "apply"

    def __bool__(self) -> bool:
        """True when anything happened: a rule applied or a shadow rule matched."""
        return self.rule is not None or bool(self.shadow)

    def raise_if_denied(self) -> None:
        if self.deny is not None and self.mode == "apply":
            raise errors.RuleDeniedError(self.rule or "?", self.deny)

    def changes(self, request: ChatRequest) -> dict[str, Any]:
        """The request fields this decision changes, with their new values."""
        out: dict[str, Any] = {}
        if self.use is not None and self.use != request.model:
            out["model"] = self.use
        if self.max_tokens is not None:
            capped = min(self.max_tokens, request.max_tokens or self.max_tokens)
            if capped != request.max_tokens:
                out["max_tokens"] = capped
        for key, value in self.set.items():
            if getattr(request, key) != value:
                out[key] = value
        return out

    def apply(self, request: ChatRequest) -> ChatRequest:
        """``request`` with the changes made (a copy; the caller re-resolves a swapped model)."""
        changes = self.changes(request)
        return request.model_copy(update=changes) if changes else request

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {k: v for k, v in (("rule", self.rule), ("mode", self.mode), ("use", self.use),
                               ("max_tokens", self.max_tokens), ("set", dict(self.set) or None),
                               ("deny", self.deny), ("cache_ttl", self.cache_ttl)) if v is not None}
        if self.shadow:
            d["shadow"] = [s.to_dict() for s in self.shadow]
        return d


#: the decision when nothing matched; shared, never mutated
EMPTY = Decision()


def _decision(rule: Rule) -> Decision:
    return Decision(rule=rule.name, use=rule.use, max_tokens=rule.max_tokens,
                    set=MappingProxyType(dict(rule.set)) if rule.set else _NO_SET,
                    deny=rule.deny, cache_ttl=rule.cache_ttl, mode=rule.mode)


@dataclass(frozen=True, slots=True)
class ConditionTrace:
    name: str
    expected: Any
    actual: Any
    held: bool


@dataclass(slots=True)
class RuleTrace:
    """One rule as explain saw it. ``outcome``: applied, shadow, preempted or no match."""

    index: int
    name: str
    mode: str
    priority: int | None
    matched: bool
    outcome: str
    conditions: list[ConditionTrace] = field(default_factory=list)
    actions: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "name": self.name, "mode": self.mode, "priority": self.priority,
                "matched": self.matched, "outcome": self.outcome,
                "conditions": [{"name": c.name, "expected": _jsonable(c.expected), "actual": _jsonable(c.actual),
                                "held": c.held} for c in self.conditions],
                "actions": _jsonable(self.actions)}


class RuleSet:
    """Validated, compiled rules in evaluation order."""

    def __init__(self, rules: Iterable[Rule] = (), *, timezone: str = "UTC",
                 indexes: Sequence[int] | None = None) -> None:
        rules = list(rules)
        self.timezone: ZoneInfo = _zone(timezone)
        idx = list(indexes) if indexes is not None else list(range(len(rules)))
        order = sorted(range(len(rules)), key=lambda i: (rules[i].priority or 0, idx[i]))
        self.rules: tuple[Rule, ...] = tuple(rules[i] for i in order)
        self.indexes: tuple[int, ...] = tuple(idx[i] for i in order)  # position in the user's list
        self._conditions = tuple(compile_when(r.when, self.timezone) for r in self.rules)
        self._decisions = tuple(_decision(r) for r in self.rules)
        matchers = tuple(_chain(tuple(c.test for c in conds)) for conds in self._conditions)
        self._shadowing = any(r.mode == "shadow" for r in self.rules)
        self._plan = tuple(zip(matchers, self._decisions))
        self._modes = tuple(r.mode == "shadow" for r in self.rules)
        #: which lazy context values some rule may need: prompt_tokens, budget_used, estimated_cost
        self.needs: frozenset[str] = frozenset(LAZY[c.name] for conds in self._conditions
                                               for c in conds if c.name in LAZY)

    @classmethod
    def from_config(cls, rules: Iterable[Mapping[str, Any] | Rule] | None, *,
                    source: str = "Client(rules=...)", timezone: str = "UTC") -> RuleSet:
        """Validate ``[[rules]]`` tables (or `Rule` objects); the first problem is a ConfigError."""
        try:
            _zone(timezone)
        except ValueError as exc:
            raise errors.ConfigError(str(exc), file=source, key="timezone", value=timezone) from None
        if isinstance(rules, (Mapping, str)):
            raise errors.ConfigError("must be a list of rule tables ([[rules]] in TOML)", file=source, key="rules")
        parsed = [parse_rule(r, index=i, source=source) for i, r in enumerate(rules or ())]
        first: dict[str, int] = {}
        for i, rule in enumerate(parsed):
            if rule.name in first:
                raise errors.ConfigError(f"duplicate rule name; {rule_label(first[rule.name], rule.name)} "
                                         "already uses it", file=source,
                                         key=rule_label(i, rule.name) + ".name", value=rule.name)
            first[rule.name] = i
        return cls(parsed, timezone=timezone)

    def __len__(self) -> int:
        return len(self.rules)

    def __iter__(self) -> Iterator[Rule]:
        return iter(self.rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def evaluate(self, ctx: RuleContext) -> Decision:
        """The first matching apply rule's decision, with every matching shadow rule attached."""
        if not self._shadowing:
            for match, decision in self._plan:
                if match(ctx):
                    return decision
            return EMPTY
        applied: Decision | None = None
        shadows: list[Decision] = []
        for (match, decision), is_shadow in zip(self._plan, self._modes):
            if (is_shadow or applied is None) and match(ctx):
                if is_shadow:
                    shadows.append(decision)
                else:
                    applied = decision
        if not shadows:
            return applied or EMPTY
        return dataclasses.replace(applied or EMPTY, shadow=tuple(shadows))

    def explain(self, ctx: RuleContext) -> list[RuleTrace]:
        """Every rule, every condition, held or not, and the rule's outcome."""
        traces, winner = [], None
        for index, rule, conds in zip(self.indexes, self.rules, self._conditions):
            checked = [_trace(c, ctx) for c in conds]
            matched = all(c.held for c in checked)
            if not matched:
                outcome = "no match"
            elif rule.mode == "shadow":
                outcome = "shadow"
            elif winner is None:
                outcome, winner = "applied", rule.name
            else:
                outcome = f"preempted by {winner!r}"
            traces.append(RuleTrace(index, rule.name, rule.mode, rule.priority, matched, outcome,
                                    checked, rule.actions()))
        return traces


def _always(ctx: RuleContext) -> bool:
    return True


def _chain(tests: tuple[Callable[[RuleContext], Any], ...]) -> Callable[[RuleContext], Any]:
    """One callable that holds when every test does, stopping at the first that fails."""
    if not tests:
        return _always
    if len(tests) == 1:
        return tests[0]
    first, rest = tests[0], _chain(tests[1:])
    return lambda ctx: first(ctx) and rest(ctx)


def _trace(cond: Condition, ctx: RuleContext) -> ConditionTrace:
    return ConditionTrace(cond.name, cond.expected, cond.observe(ctx), cond.test(ctx))


# ── rendering ────────────────────────────────────────────────────────────────

def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)  # Decimal stays exact as text


def explain_dict(traces: list[RuleTrace], decision: Decision,
                 request: ChatRequest | None = None) -> dict[str, Any]:
    """Explain as plain data (JSON-safe; Decimals as strings)."""
    out: dict[str, Any] = {"rules": [t.to_dict() for t in traces], "decision": _jsonable(decision.to_dict())}
    if request is not None:
        out["request"] = {"model": request.model, "max_tokens": request.max_tokens}
        out["changes"] = _jsonable(decision.changes(request))
    return out


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_show(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {_show(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "unknown"
    return str(value).lower() if isinstance(value, bool) else str(value)


def format_explain(traces: list[RuleTrace], decision: Decision, request: ChatRequest | None = None) -> str:
    """Human-readable explain: each rule, each condition held or failed, then the result."""
    if not traces:
        return "no rules configured\n" + _result(decision, request)
    lines = []
    width = max((len(c.name) for t in traces for c in t.conditions), default=0)
    for t in traces:
        prio = f", priority {t.priority}" if t.priority is not None else ""
        lines.append(f"{rule_label(t.index, t.name)} [{t.mode}{prio}]: {t.outcome}")
        if not t.conditions:
            lines.append("    (no conditions: matches every call)")
        for c in t.conditions:
            mark = "held  " if c.held else "FAILED"
            lines.append(f"    {mark} {c.name:<{width}} = {_show(c.expected)}  (actual: {_show(c.actual)})")
        lines.append("    actions: " + ", ".join(f"{k} = {_show(v)}" for k, v in t.actions.items()))
    return "\n".join(lines) + "\n" + _result(decision, request)


def _result(decision: Decision, request: ChatRequest | None) -> str:
    lines = []
    if decision.rule is None:
        lines.append("result: no rule applies; the request is sent unchanged")
    elif decision.deny is not None:
        lines.append(f"result: denied by {decision.rule!r}: {decision.deny}")
    else:
        lines.append(f"result: rule {decision.rule!r} applies")
        if request is not None:
            for key, new in decision.changes(request).items():
                lines.append(f"    {key}: {_show(getattr(request, key))} -> {_show(new)}")
        if decision.cache_ttl is not None:
            lines.append(f"    cache_ttl: {decision.cache_ttl}s")
    for s in decision.shadow:
        acts = s.to_dict()
        desc = ", ".join(f"{k} = {_show(v)}" for k, v in acts.items() if k not in ("rule", "mode"))
        lines.append(f"shadow: {s.rule!r} would have: {desc}")
    return "\n".join(lines) + "\n"
