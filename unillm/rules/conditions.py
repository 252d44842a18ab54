"""Rule conditions: what one call looks like (`RuleContext`) and the checks run on it.

A rule's ``when`` is compiled once into a tuple of `Condition`, cheapest first:
names and flags, then the clock, then text (keywords, regex), and last the lazy
values (prompt tokens, budget used, estimated cost). Evaluation stops at the
first condition that fails, so the lazy values are computed only when every
cheaper condition of some rule held — and then once per call, not per rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from ..profiles import ModelRef
from ..types import ChatRequest
from .spec import WEEKDAYS, When, _words_regex

__all__ = ["RuleContext", "Condition", "compile_when", "LAZY"]

#: conditions that call one of the context's lazy callables
LAZY = {"prompt_tokens_above": "prompt_tokens", "prompt_tokens_below": "prompt_tokens",
        "budget_used_above": "budget_used", "estimated_cost_above": "estimated_cost"}

_UNSET: Any = object()
_WORD = re.compile(r"\w+")
_GLOB_CHARS = re.compile(r"[*?\[]")


class RuleContext:
    """One call as the rules see it.

    ``now`` must be timezone-aware (the Client's injected clock). The three
    callables are lazy: each is called at most once, and only when a rule needs
    its value. ``budget_used`` is the fraction spent of the tightest matching
    budget and ``estimated_cost`` the call's worst case in USD; either may
    return None (no budget, no price), and a condition on None does not hold.
    """

    __slots__ = ("request", "ref", "tags", "now", "requested", "qualified", "names", "_tokens", "_budget",
                 "_cost", "_tokens_v", "_budget_v", "_cost_v", "_texts", "_words", "_local", "_memo")
    _tokens_v: int | None
    _budget_v: float | None
    _cost_v: Decimal | None

    def __init__(self, request: ChatRequest, ref: ModelRef, *, tags: Mapping[str, str] | None = None,
                 now: datetime, prompt_tokens: Callable[[], int] | None = None,
                 budget_used: Callable[[], float | None] | None = None,
                 estimated_cost: Callable[[], Decimal | None] | None = None) -> None:
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("RuleContext.now must be timezone-aware (use the client's clock)")
        self.request, self.ref, self.tags, self.now = request, ref, tags or {}, now
        self.requested = request.model
        self.qualified = f"{ref.provider}/{ref.model}"
        # what a model glob is matched against: the vendor's id, what was written, provider/model
        self.names = (ref.model, request.model, self.qualified)
        self._tokens, self._budget, self._cost = prompt_tokens, budget_used, estimated_cost
        self._tokens_v = self._budget_v = self._cost_v = _UNSET
        self._texts: dict[str, str] = {}
        self._words: dict[str, frozenset[str]] = {}
        self._local: dict[ZoneInfo, datetime] = {}
        self._memo: dict[Any, bool] = {}

    def prompt_tokens(self) -> int | None:
        if self._tokens_v is _UNSET:
            self._tokens_v = self._tokens() if self._tokens is not None else None
        return self._tokens_v

    def budget_used(self) -> float | None:
        if self._budget_v is _UNSET:
            self._budget_v = self._budget() if self._budget is not None else None
        return self._budget_v

    def estimated_cost(self) -> Decimal | None:
        if self._cost_v is _UNSET:
            self._cost_v = self._cost() if self._cost is not None else None
        return self._cost_v

    def text(self, match_on: str) -> str:
        """The latest user message, or every message's text joined (``conversation``)."""
        hit = self._texts.get(match_on)
        if hit is None:
            if match_on == "conversation":
                hit = "\n".join(m.text() for m in self.request.messages)
            else:
                hit = self.request.last_user_text()
            self._texts[match_on] = hit
        return hit

    def words(self, match_on: str) -> frozenset[str]:
        """The lower-cased words (``\\w+``) of `text`: keyword tests become set lookups."""
        hit = self._words.get(match_on)
        if hit is None:
            hit = self._words[match_on] = frozenset(_WORD.findall(self.text(match_on).lower()))
        return hit

    def search(self, pattern: re.Pattern[str], match_on: str) -> bool:
        """``pattern.search`` on `text`, once per call however many rules share the regex."""
        key = (pattern, match_on)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = pattern.search(self.text(match_on)) is not None
        return hit

    def local(self, zone: ZoneInfo) -> datetime:
        hit = self._local.get(zone)
        if hit is None:
            hit = self._local[zone] = self.now.astimezone(zone)
        return hit


class Condition(NamedTuple):
    """One check: ``test`` for evaluation, ``observe`` for explain (the actual value)."""

    name: str
    expected: Any
    test: Callable[[RuleContext], bool]
    observe: Callable[[RuleContext], Any]


def compile_when(when: When, default_zone: ZoneInfo) -> tuple[Condition, ...]:
    """The conditions of ``when``, cheapest first. Empty: the rule matches every call."""
    out: list[Condition] = []
    out += _names(when)
    out += _flags(when)
    out += _clock(when, when._zone or default_zone)
    out += _text(when)
    out += _lazy(when)
    return tuple(out)


def _names(w: When) -> list[Condition]:
    out = []
    if w.model is not None:
        out.append(Condition("model", w.model, _glob_test(w.model, w._model_re),
                             lambda c: c.requested if c.requested == c.ref.model else f"{c.requested} ({c.qualified})"))
    if w._provider_re is not None and w.provider is not None:
        out.append(Condition("provider", w.provider, _provider_test(w.provider, w._provider_re),
                             lambda c: c.ref.provider))
    if w.tags:
        want = tuple(w.tags.items())

        def tags_ok(c: RuleContext) -> bool:
            tags = c.tags
            for k, v in want:
                got = tags.get(k)
                if got is None or (v != "*" and got != v):
                    return False
            return True
        out.append(Condition("tags", w.tags, tags_ok, lambda c: {k: c.tags.get(k) for k, _ in want}))
    return out


def _glob_test(globs: str | list[str], regex: Any) -> Callable[[RuleContext], bool]:
    """Fastest test for the globs: a set for literals, ``startswith`` for ``prefix*``, else the regex."""
    globs = [globs] if isinstance(globs, str) else globs
    literal = frozenset(g for g in globs if not _GLOB_CHARS.search(g))
    prefixes = tuple(g[:-1] for g in globs if g.endswith("*") and not _GLOB_CHARS.search(g[:-1]))
    if len(literal) + len(prefixes) < len(globs):
        m = regex.match
        return lambda c: bool(m(c.names[0]) or m(c.names[1]) or m(c.names[2]))
    if not prefixes:
        return lambda c: not literal.isdisjoint(c.names)
    if not literal:
        return lambda c: c.names[0].startswith(prefixes) or c.names[1].startswith(prefixes) \
            or c.names[2].startswith(prefixes)
    return lambda c: (not literal.isdisjoint(c.names) or c.names[0].startswith(prefixes)
                      or c.names[1].startswith(prefixes) or c.names[2].startswith(prefixes))


def _provider_test(globs: str | list[str], regex: Any) -> Callable[[RuleContext], bool]:
    globs = [globs] if isinstance(globs, str) else globs
    if any(_GLOB_CHARS.search(g) for g in globs):
        m = regex.match
        return lambda c: m(c.ref.provider) is not None
    names = frozenset(globs)
    return lambda c: c.ref.provider in names


def _json_output(c: RuleContext) -> bool:
    rf = c.request.response_format
    return c.request.response_model is not None or (rf is not None and rf.type != "text")


def _flags(w: When) -> list[Condition]:
    probes: dict[str, Callable[[RuleContext], bool]] = {
        "has_tools": lambda c: bool(c.request.tools),
        "has_images": lambda c: c.request.has_images(),
        "json_output": _json_output,
    }
    out: list[Condition] = []
    for name, probe in probes.items():
        want = getattr(w, name)
        if want is not None:
            out.append(Condition(name, want, _is(probe, want), probe))
    return out


def _is(probe: Callable[[RuleContext], bool], want: bool) -> Callable[[RuleContext], bool]:
    return lambda c: probe(c) is want


def _clock(w: When, zone: ZoneInfo) -> list[Condition]:
    window, days = w._window, w._days
    if window is None and days is None:
        return []
    out = []
    if window is not None:
        def in_window(c: RuleContext) -> bool:
            t = c.local(zone)
            return window.contains(t.hour * 60 + t.minute)
        out.append(Condition("time", f"{window.text} {zone.key}", in_window,
                             lambda c: c.local(zone).strftime("%H:%M %Z")))
    if days is not None:
        def weekday(c: RuleContext) -> int:
            # after midnight, a window that crossed it still belongs to the day it began
            t = c.local(zone)
            if window is not None and window.crosses_midnight and t.hour * 60 + t.minute < window.end:
                return (t.weekday() - 1) % 7
            return t.weekday()
        out.append(Condition("weekdays", w.weekdays, lambda c: weekday(c) in days,
                             lambda c: WEEKDAYS[weekday(c)]))
    return out


def _text(w: When) -> list[Condition]:
    on = w.match_on
    out = []
    if w.keywords_any is not None:
        has = _keyword_test(w.keywords_any, on)
        out.append(Condition("keywords_any", w.keywords_any, has, lambda c: _found(w._any_re, c.text(on))))
    if w.keywords_none is not None:
        has_none = _keyword_test(w.keywords_none, on)
        out.append(Condition("keywords_none", w.keywords_none, lambda c: not has_none(c),
                             lambda c: _found(w._none_re, c.text(on))))
    if w._regex is not None:
        rx = w._regex
        out.append(Condition("regex", w.regex, lambda c: c.search(rx, on),
                             lambda c: m.group(0) if (m := rx.search(c.text(on))) else None))
    return out


def _keyword_test(words: list[str], on: str) -> Callable[[RuleContext], bool]:
    """Whole-word, case-insensitive: plain words are looked up in the call's word set,
    the rest ("c++", "machine learning") searched with a word-boundary regex."""
    plain = frozenset(k.lower() for k in words if _WORD.fullmatch(k))
    rest = [k for k in words if not _WORD.fullmatch(k)]
    if not rest:
        return lambda c: not plain.isdisjoint(c.words(on))
    rx = _words_regex(rest)
    if not plain:
        return lambda c: c.search(rx, on)
    return lambda c: not plain.isdisjoint(c.words(on)) or c.search(rx, on)


def _found(pattern: Any, text: str) -> list[str]:
    seen: dict[str, None] = {}
    for m in pattern.finditer(text):
        seen.setdefault(m.group(0).lower(), None)
    return list(seen)


def _lazy(w: When) -> list[Condition]:
    out = []
    if w.prompt_tokens_above is not None:
        n = w.prompt_tokens_above
        out.append(Condition("prompt_tokens_above", n, lambda c: _gt(c.prompt_tokens(), n),
                             lambda c: c.prompt_tokens()))
    if w.prompt_tokens_below is not None:
        n2 = w.prompt_tokens_below
        out.append(Condition("prompt_tokens_below", n2,
                             lambda c: (v := c.prompt_tokens()) is not None and v < n2,
                             lambda c: c.prompt_tokens()))
    if w.budget_used_above is not None:
        f = w.budget_used_above
        out.append(Condition("budget_used_above", f, lambda c: _gt(c.budget_used(), f),
                             lambda c: c.budget_used()))
    if w.estimated_cost_above is not None:
        usd = w.estimated_cost_above
        out.append(Condition("estimated_cost_above", usd, lambda c: _gt(c.estimated_cost(), usd),
                             lambda c: c.estimated_cost()))
    return out


def _gt(value: Any, limit: Any) -> bool:
    return value is not None and value > limit
