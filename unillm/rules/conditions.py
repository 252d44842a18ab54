"""Rule conditions: what one call looks like (`RuleContext`) and the checks run on it.

A rule's ``when`` is compiled once into a tuple of `Condition`, one per field set, each
built by that field's entry in `CONDITIONS` (cheapest first):
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

__all__ = ["CONDITIONS", "LAZY", "MODIFIERS", "Condition", "RuleContext", "compile_when"]

#: conditions that call one of the context's lazy callables
LAZY = {"prompt_tokens_above": "prompt_tokens", "prompt_tokens_below": "prompt_tokens",
        "budget_used_above": "budget_used", "estimated_cost_above": "estimated_cost"}

_UNSET: Any = object()
_WORD = re.compile(r"\w+")
_GLOB_CHARS = re.compile(r"[*?\[]")


class RuleContext:
    """One call as the rules see it.

    ``now`` must be timezone-aware (the Client's injected clock); ``stream`` is whether the
    call streams. The three
    callables are lazy: each is called at most once, and only when a rule needs
    its value. ``budget_used`` is the fraction spent of the tightest matching
    budget and ``estimated_cost`` the call's worst case in USD; either may
    return None (no budget, no price), and a condition on None does not hold.
    """

    __slots__ = (
        "_budget",
        "_budget_v",
        "_cost",
        "_cost_v",
        "_local",
        "_memo",
        "_texts",
        "_tokens",
        "_tokens_v",
        "_words",
        "names",
        "now",
        "qualified",
        "ref",
        "request",
        "requested",
        "kind",
        "stream",
        "tags",
    )
    _tokens_v: int | None
    _budget_v: float | None
    _cost_v: Decimal | None

    def __init__(self, request: ChatRequest, ref: ModelRef, *, tags: Mapping[str, str] | None = None,
                 now: datetime, stream: bool = False, prompt_tokens: Callable[[], int] | None = None,
                 budget_used: Callable[[], float | None] | None = None,
                 estimated_cost: Callable[[], Decimal | None] | None = None, kind: str = "chat") -> None:
        if now.tzinfo is None or now.utcoffset() is None:
            raise ValueError("RuleContext.now must be timezone-aware (use the client's clock)")
        self.request, self.ref, self.tags, self.now = request, ref, tags or {}, now
        self.stream, self.kind = stream, kind
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


#: build one `When` field's condition (None: the field is unset); the zone is the rule's
Builder = Callable[[When, ZoneInfo], "Condition | None"]


def compile_when(when: When, default_zone: ZoneInfo) -> tuple[Condition, ...]:
    """The conditions of ``when``, cheapest first. Empty: the rule matches every call."""
    zone = when._zone or default_zone
    return tuple(c for build in CONDITIONS.values() if (c := build(when, zone)) is not None)


def _model(w: When, zone: ZoneInfo) -> Condition | None:
    if w.model is None:
        return None
    return Condition("model", w.model, _glob_test(w.model, w._model_re),
                     lambda c: c.requested if c.requested == c.ref.model else f"{c.requested} ({c.qualified})")


def _provider(w: When, zone: ZoneInfo) -> Condition | None:
    if w._provider_re is None or w.provider is None:
        return None
    return Condition("provider", w.provider, _provider_test(w.provider, w._provider_re),
                     lambda c: c.ref.provider)


def _tags(w: When, zone: ZoneInfo) -> Condition | None:
    if not w.tags:
        return None
    want = tuple(w.tags.items())

    def tags_ok(c: RuleContext) -> bool:
        tags = c.tags
        for k, v in want:
            got = tags.get(k)
            if got is None or (v != "*" and got != v):
                return False
        return True
    return Condition("tags", w.tags, tags_ok, lambda c: {k: c.tags.get(k) for k, _ in want})


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


def _flag(name: str, probe: Callable[[RuleContext], bool]) -> Builder:
    """A yes/no condition: holds when ``probe`` says what the rule wants."""
    def build(w: When, zone: ZoneInfo) -> Condition | None:
        want = getattr(w, name)
        if want is None:
            return None
        return Condition(name, want, lambda c: probe(c) is want, probe)
    return build


def _kind(w: When, zone: ZoneInfo) -> Condition | None:
    want = w.kind
    if want is None:
        return None
    return Condition("kind", want, lambda c: c.kind == want, lambda c: c.kind)


def _time(w: When, zone: ZoneInfo) -> Condition | None:
    window = w._window
    if window is None:
        return None

    def in_window(c: RuleContext) -> bool:
        t = c.local(zone)
        return window.contains(t.hour * 60 + t.minute)
    return Condition("time", f"{window.text} {zone.key}", in_window,
                     lambda c: c.local(zone).strftime("%H:%M %Z"))


def _weekdays(w: When, zone: ZoneInfo) -> Condition | None:
    window, days = w._window, w._days
    if days is None:
        return None

    def weekday(c: RuleContext) -> int:
        # after midnight, a window that crossed it still belongs to the day it began
        t = c.local(zone)
        if window is not None and window.crosses_midnight and t.hour * 60 + t.minute < window.end:
            return (t.weekday() - 1) % 7
        return t.weekday()
    return Condition("weekdays", w.weekdays, lambda c: weekday(c) in days, lambda c: WEEKDAYS[weekday(c)])


def _keywords_any(w: When, zone: ZoneInfo) -> Condition | None:
    if w.keywords_any is None:
        return None
    on, has = w.match_on, _keyword_test(w.keywords_any, w.match_on)
    return Condition("keywords_any", w.keywords_any, has, lambda c: _found(w._any_re, c.text(on)))


def _keywords_none(w: When, zone: ZoneInfo) -> Condition | None:
    if w.keywords_none is None:
        return None
    on, has = w.match_on, _keyword_test(w.keywords_none, w.match_on)
    return Condition("keywords_none", w.keywords_none, lambda c: not has(c),
                     lambda c: _found(w._none_re, c.text(on)))


def _regex(w: When, zone: ZoneInfo) -> Condition | None:
    rx, on = w._regex, w.match_on
    if rx is None:
        return None
    def matched(c: RuleContext) -> str | None:
        m = rx.search(c.text(on))
        return m.group(0) if m else None
    return Condition("regex", w.regex, lambda c: c.search(rx, on), matched)


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


def _above(name: str, value: Callable[[RuleContext], Any]) -> Builder:
    """A lazy threshold: holds when the context's value is known and above the rule's."""
    def build(w: When, zone: ZoneInfo) -> Condition | None:
        limit = getattr(w, name)
        if limit is None:
            return None
        return Condition(name, limit, lambda c: _gt(value(c), limit), value)
    return build


def _below(name: str, value: Callable[[RuleContext], Any]) -> Builder:
    def build(w: When, zone: ZoneInfo) -> Condition | None:
        limit = getattr(w, name)
        if limit is None:
            return None
        def below(c: RuleContext) -> bool:
            v = value(c)
            return v is not None and bool(v < limit)
        return Condition(name, limit, below, value)
    return build


def _gt(value: Any, limit: Any) -> bool:
    return value is not None and value > limit


#: every `When` field that is a condition, with its builder, cheapest first: names and flags,
#: then the clock, then text, and last the lazy values (evaluation stops at the first that
#: fails). A `When` field is either here or in `MODIFIERS`; a test holds them to `When`.
CONDITIONS: dict[str, Builder] = {
    "model": _model,
    "provider": _provider,
    "tags": _tags,
    "has_tools": _flag("has_tools", lambda c: bool(c.request.tools)),
    "has_images": _flag("has_images", lambda c: c.request.has_images()),
    "json_output": _flag("json_output", _json_output),
    "stream": _flag("stream", lambda c: c.stream),
    "kind": _kind,
    "time": _time,
    "weekdays": _weekdays,
    "keywords_any": _keywords_any,
    "keywords_none": _keywords_none,
    "regex": _regex,
    "prompt_tokens_above": _above("prompt_tokens_above", RuleContext.prompt_tokens),
    "prompt_tokens_below": _below("prompt_tokens_below", RuleContext.prompt_tokens),
    "budget_used_above": _above("budget_used_above", RuleContext.budget_used),
    "estimated_cost_above": _above("estimated_cost_above", RuleContext.estimated_cost),
}
#: `When` fields that shape other conditions rather than being one: the text the keyword
#: and regex conditions read, and the zone of the clock conditions
MODIFIERS: frozenset[str] = frozenset({"match_on", "timezone"})
