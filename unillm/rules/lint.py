"""Static checks of rules and fallbacks: what would fail or never fire, before a call does.

`lint` validates each rule on its own, so one bad regex is reported next to every
other problem instead of stopping at the first. Findings:

- error: a rule that does not load (bad key, type, regex, time window, timezone);
  a duplicate rule name; a ``use`` or fallback target no provider serves; a fallback cycle;
  a target without a price (a warning when ``on_missing_price = "record"``).
- warning: a rule that can never apply because an earlier apply rule has no
  conditions or exactly the same conditions.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from .. import errors
from .engine import RuleSet
from .spec import Rule, parse_rule, rule_label

__all__ = ["Finding", "lint"]


@dataclass(frozen=True, slots=True)
class Finding:
    """One lint result. ``index``/``rule`` point at a rule; fallbacks use ``key`` alone."""

    level: Literal["error", "warning"]
    message: str
    index: int | None = None
    rule: str | None = None
    key: str | None = None

    def where(self) -> str:
        head = rule_label(self.index, self.rule) if self.index is not None else ""
        if self.key and head:
            return f"{head}.{self.key}"
        return self.key or head

    def __str__(self) -> str:
        where = self.where()
        return f"{self.level}: {where}: {self.message}" if where else f"{self.level}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "where": self.where(), "index": self.index, "rule": self.rule,
                "key": self.key, "message": self.message}


def lint(rules: RuleSet | Iterable[Mapping[str, Any] | Rule], fallbacks: Iterable[Any] = (),
         resolver: Any = None, pricebook: Any = None, *, source: str = "unillm.toml",
         timezone: str = "UTC", on_missing_price: str = "raise") -> list[Finding]:
    """Every problem found in ``rules`` and ``fallbacks``, errors first.

    ``rules`` is a `RuleSet` or raw ``[[rules]]`` tables; ``fallbacks`` are
    ``FallbackSpec`` objects or ``{"model", "then"}`` tables. Without a
    ``resolver`` targets are not checked; without a ``pricebook`` prices are not.
    """
    findings: list[Finding] = []
    ruleset = rules if isinstance(rules, RuleSet) else _load_each(list(rules), source, timezone, findings)
    missing = "warning" if on_missing_price == "record" else "error"
    checker = _Targets(resolver, pricebook, missing)
    for index, rule in zip(ruleset.indexes, ruleset.rules):
        if rule.use is not None:
            findings += checker.check(rule.use, index=index, rule=rule.name, key="use")
    findings += _shadowed(ruleset)
    specs = [_spec(f) for f in fallbacks]
    for i, (model, then) in enumerate(specs):
        findings += checker.check(model, key=f"fallbacks[{i}].model")
        for j, target in enumerate(then):
            findings += checker.check(target, key=f"fallbacks[{i}].then[{j}]")
    findings += _cycles(specs, resolver)
    return sorted(findings, key=lambda f: f.level != "error")


def _load_each(raw: list[Any], source: str, timezone: str, findings: list[Finding]) -> RuleSet:
    good: list[Rule] = []
    indexes: list[int] = []
    names: dict[str, int] = {}
    for i, table in enumerate(raw):
        name = table.get("name") if isinstance(table, Mapping) else getattr(table, "name", None)
        try:
            rule = parse_rule(table, index=i, source=source)
        except errors.ConfigError as exc:
            findings.append(_load_finding(exc, i, name, source))
            continue
        if rule.name in names:
            findings.append(Finding("error", f"duplicate rule name; {rule_label(names[rule.name], name)} "
                                    "already uses it", index=i, rule=rule.name, key="name"))
            continue
        names[rule.name] = i
        good.append(rule)
        indexes.append(i)
    try:
        return RuleSet(good, timezone=timezone, indexes=indexes)
    except ValueError as exc:
        findings.append(Finding("error", str(exc), key="timezone"))
        return RuleSet(good, indexes=indexes)


def _load_finding(exc: errors.ConfigError, index: int, name: Any, source: str) -> Finding:
    label, full = rule_label(index, name), exc.key or ""
    key = full[len(label) + 1:] if full.startswith(label + ".") else None
    message = str(exc).removeprefix(f"{source}: ").removeprefix(f"{full}: ")
    return Finding("error", message, index=index, rule=name if isinstance(name, str) else None, key=key)


class _Targets:
    """Checks that a model string resolves and has a price; each target once per lint."""

    def __init__(self, resolver: Any, pricebook: Any, missing_level: str) -> None:
        self.resolver, self.pricebook, self.missing_level = resolver, pricebook, missing_level

    def check(self, model: str, **where: Any) -> list[Finding]:
        if self.resolver is None:
            return []
        try:
            ref = self.resolver.resolve(model)
        except (errors.UnknownModelError, errors.ConfigError, errors.InvalidRequestError) as exc:
            return [Finding("error", str(exc), **where)]
        if self.pricebook is None:
            return []
        try:
            self.pricebook.price(ref.provider, ref.model)
        except errors.MissingPriceError as exc:
            return [Finding(self.missing_level, str(exc), **where)]  # type: ignore[arg-type]
        return []


def _when_key(rule: Rule) -> dict[str, Any]:
    given = rule.when.given()
    for key in ("model", "provider"):
        if isinstance(given.get(key), str):
            given[key] = [given[key]]
    return given


def _shadowed(ruleset: RuleSet) -> list[Finding]:
    """Apply rules that never fire: an earlier apply rule has no conditions or the same ones."""
    out: list[Finding] = []
    earlier: list[tuple[int, Rule, dict[str, Any]]] = []
    for index, rule in zip(ruleset.indexes, ruleset.rules):
        if rule.mode != "apply":
            continue
        key = _when_key(rule)
        for e_index, e_rule, e_key in earlier:
            if not e_key or e_key == key:
                why = "has no conditions" if not e_key else "has the same conditions"
                out.append(Finding("warning", f"never applies: {rule_label(e_index, e_rule.name)} comes "
                                   f"first and {why}", index=index, rule=rule.name, key="when"))
                break
        earlier.append((index, rule, key))
    return out


def _spec(f: Any) -> tuple[str, list[str]]:
    if isinstance(f, Mapping):
        return str(f.get("model")), [str(t) for t in f.get("then") or []]
    return f.model, list(f.then)


def _canon(model: str, resolver: Any) -> str:
    if resolver is None:
        return model
    try:
        return str(resolver.resolve(model))
    except errors.UnillmError:
        return model


def _cycles(specs: list[tuple[str, list[str]]], resolver: Any) -> list[Finding]:
    """Each fallback cycle once, named as written (gpt-4o -> claude -> gpt-4o)."""
    graph: dict[str, list[str]] = {}
    label: dict[str, str] = {}
    where: dict[str, int] = {}
    for i, (model, then) in enumerate(specs):
        node = _canon(model, resolver)
        label.setdefault(node, model)
        where.setdefault(node, i)
        for t in then:
            label.setdefault(_canon(t, resolver), t)
        graph.setdefault(node, []).extend(_canon(t, resolver) for t in then)
    found: list[Finding] = []
    seen_cycles: set[frozenset[str]] = set()
    state: dict[str, int] = {}  # 1 = on the path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                if frozenset(cycle) not in seen_cycles:
                    seen_cycles.add(frozenset(cycle))
                    found.append(Finding("error", "fallback cycle: " + " -> ".join(label[n] for n in cycle),
                                         key=f"fallbacks[{where[nxt]}]"))
            elif state.get(nxt) is None:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])
    return found
