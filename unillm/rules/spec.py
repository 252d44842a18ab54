"""What a rule is: the ``[[rules]]`` shape, validated strictly, compiled once.

A rule is ``when`` (conditions, all must hold) plus actions::

    [[rules]]
    name = "short prompts go to mini"
    when = { model = "gpt-4o*", prompt_tokens_below = 100, keywords_none = ["code", "analysis"] }
    use  = "gpt-4o-mini"

Everything that can be wrong is caught here, at load: unknown keys, wrong types,
bad regexes, time windows, timezone names and weekdays. Regexes, keyword lists
and model globs are compiled once, here, so evaluating a rule costs a few
attribute reads and ``re`` matches.

Errors are `ConfigError` naming the file, the rule's index and name, the key
and the value::

    unillm.toml: rules[2] ("short prompts go to mini").when.prompt_tokens_below:
    Input should be a valid integer (got 'abc')
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal, InvalidOperation
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from .. import errors

__all__ = ["When", "Rule", "TimeWindow", "SETTABLE", "WEEKDAYS", "parse_rule", "rule_label",
           "nested_rules"]

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

#: request parameters a rule may ``set`` (``max_tokens`` has its own capping action)
SETTABLE = frozenset({
    "temperature", "top_p", "seed", "frequency_penalty", "presence_penalty", "top_k",
    "reasoning_effort", "parallel_tool_calls", "stop", "user",
})

_STRICT = ConfigDict(extra="forbid", strict=True, frozen=True)
_TIME = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class TimeWindow:
    """A daily window ``"HH:MM-HH:MM"`` in local minutes; may cross midnight."""

    __slots__ = ("text", "start", "end")

    def __init__(self, text: str) -> None:
        m = _TIME.match(text)
        if not m:
            raise ValueError("time window must look like \"22:00-06:00\" (HH:MM-HH:MM)")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or m1 > 59 or h2 > 24 or m2 > 59 or (h2 == 24 and m2 != 0):
            raise ValueError("time window has an invalid hour or minute (00:00-24:00)")
        self.text, self.start, self.end = text.strip(), h1 * 60 + m1, h2 * 60 + m2
        if self.start == self.end:
            raise ValueError("time window is empty (start equals end); omit `time` for all day")

    @property
    def crosses_midnight(self) -> bool:
        return self.end < self.start

    def contains(self, minute: int) -> bool:
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end


def _glob_regex(value: str | list[str]) -> re.Pattern[str]:
    pats = [value] if isinstance(value, str) else value
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in pats))


def _words_regex(words: list[str]) -> re.Pattern[str]:
    # \b only makes sense next to a word character: "c++" must still match as a whole token
    alts = []
    for w in words:
        left = r"\b" if re.match(r"\w", w[0]) else r"(?<!\w)"
        right = r"\b" if re.match(r"\w", w[-1]) else r"(?!\w)"
        alts.append(left + re.escape(w) + right)
    return re.compile("|".join(alts), re.IGNORECASE)


class When(BaseModel):
    """Conditions; all given ones must hold. An empty ``when`` matches every call."""

    model_config = _STRICT

    model: str | list[str] | None = None
    provider: str | list[str] | None = None
    prompt_tokens_above: int | None = Field(default=None, ge=0)
    prompt_tokens_below: int | None = Field(default=None, gt=0)
    keywords_any: list[str] | None = None
    keywords_none: list[str] | None = None
    regex: str | None = None
    match_on: Literal["last_user", "conversation"] = "last_user"
    time: str | None = None
    timezone: str | None = None
    weekdays: list[str] | None = None
    tags: dict[str, str] | None = None
    has_tools: bool | None = None
    has_images: bool | None = None
    json_output: bool | None = None
    stream: bool | None = None
    #: what the call is: "chat" (chat/achat) or "embed" (embed/aembed); absent, a rule is
    #: for chat calls only, so no chat rule ever swaps an embedding call onto a chat model
    kind: Literal["chat", "embed"] | None = None
    budget_used_above: float | None = Field(default=None, ge=0)
    estimated_cost_above: Decimal | None = Field(default=None, ge=0)

    # compiled once, read by conditions.py
    _model_re: re.Pattern[str] | None = PrivateAttr(default=None)
    _provider_re: re.Pattern[str] | None = PrivateAttr(default=None)
    _any_re: re.Pattern[str] | None = PrivateAttr(default=None)
    _none_re: re.Pattern[str] | None = PrivateAttr(default=None)
    _regex: re.Pattern[str] | None = PrivateAttr(default=None)
    _window: TimeWindow | None = PrivateAttr(default=None)
    _zone: ZoneInfo | None = PrivateAttr(default=None)
    _days: frozenset[int] | None = PrivateAttr(default=None)

    @field_validator("model", "provider")
    @classmethod
    def _globs(cls, v: Any) -> Any:
        if isinstance(v, list) and (not v or not all(p.strip() for p in v)):
            raise ValueError("needs at least one non-empty glob")
        if isinstance(v, str) and not v.strip():
            raise ValueError("must be a non-empty glob")
        return v

    @field_validator("keywords_any", "keywords_none")
    @classmethod
    def _words(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError("needs at least one keyword")
            bad = [w for w in v if not w.strip()]
            if bad:
                raise ValueError("keywords must be non-empty")
            v = [w.strip() for w in v]
        return v

    @field_validator("regex")
    @classmethod
    def _regex_ok(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"invalid regular expression: {exc}") from None
        return v

    @field_validator("time")
    @classmethod
    def _time_ok(cls, v: str | None) -> str | None:
        if v is not None:
            TimeWindow(v)
        return v

    @field_validator("timezone")
    @classmethod
    def _zone_ok(cls, v: str | None) -> str | None:
        if v is not None:
            _zone(v)
        return v

    @field_validator("weekdays")
    @classmethod
    def _days_ok(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            if not v:
                raise ValueError("needs at least one day")
            v = [d.strip().lower()[:3] if d.strip().lower() in _LONG_DAYS else d.strip().lower() for d in v]
            bad = [d for d in v if d not in WEEKDAYS]
            if bad:
                raise ValueError(f"unknown weekday {bad[0]!r}; use {', '.join(WEEKDAYS)}")
        return v

    @field_validator("estimated_cost_above", mode="before")
    @classmethod
    def _money(cls, v: Any) -> Any:
        # TOML gives floats; money is exact, so go through the float's shortest repr
        if isinstance(v, bool):
            return v
        if isinstance(v, (int, float)):
            return Decimal(str(v))
        if isinstance(v, str):
            try:
                return Decimal(v)
            except InvalidOperation:
                raise ValueError("must be a number of USD") from None
        return v

    @model_validator(mode="after")
    def _compile(self) -> When:
        if self.prompt_tokens_above is not None and self.prompt_tokens_below is not None \
                and self.prompt_tokens_below <= self.prompt_tokens_above + 1:
            raise ValueError("prompt_tokens_below must be greater than prompt_tokens_above + 1, "
                             "or no prompt can match")
        if self.timezone and not (self.time or self.weekdays):
            raise ValueError("timezone needs `time` or `weekdays`")
        self._model_re = _glob_regex(self.model) if self.model else None
        self._provider_re = _glob_regex(self.provider) if self.provider else None
        self._any_re = _words_regex(self.keywords_any) if self.keywords_any else None
        self._none_re = _words_regex(self.keywords_none) if self.keywords_none else None
        self._regex = re.compile(self.regex) if self.regex is not None else None
        self._window = TimeWindow(self.time) if self.time else None
        self._zone = _zone(self.timezone) if self.timezone else None
        self._days = frozenset(WEEKDAYS.index(d) for d in self.weekdays) if self.weekdays else None
        return self

    def given(self) -> dict[str, Any]:
        """The conditions actually written (``match_on``/``timezone`` are modifiers)."""
        return self.model_dump(exclude_none=True, exclude={"match_on"} if self.match_on == "last_user" else set())


# where the rule being built came from, for its error messages (parse_rule sets it)
_WHERE: ContextVar[tuple[str, int | None]] = ContextVar("unillm_rule_source", default=("Rule(...)", None))

# set while `Settings` validates: a rule's errors join the settings' own (see `nested_rules`)
_NESTED: ContextVar[bool] = ContextVar("unillm_rules_nested", default=False)


@contextmanager
def nested_rules() -> Iterator[None]:
    """Within this block a bad `Rule` raises its `ValidationError` (pydantic then reports it
    at ``rules[i]...`` with the rest) instead of a `ConfigError` of its own."""
    token = _NESTED.set(True)
    try:
        yield
    finally:
        _NESTED.reset(token)


_LONG_DAYS = {"monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"}


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown timezone {name!r}; use an IANA name like 'Europe/Paris' or 'UTC'") from None


class Rule(BaseModel):
    """One optimization rule: ``when`` conditions and what to do when they hold.

    Built from a TOML table (`parse_rule`) or directly in Python,
    ``Rule(name="...", when={...}, use="gpt-4o-mini")``; a mistake in either is a
    `ConfigError` naming the rule and the key.
    """

    model_config = _STRICT

    name: str = Field(min_length=1)
    priority: int | None = None
    mode: Literal["apply", "shadow"] = "apply"
    when: When = Field(default_factory=When, strict=False)  # a table is what TOML gives
    use: str | None = Field(default=None, min_length=1)
    max_tokens: int | None = Field(default=None, gt=0)
    set: dict[str, Any] = Field(default_factory=dict)
    deny: str | None = Field(default=None, min_length=1)
    cache_ttl: int | None = Field(default=None, ge=0)

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            if _NESTED.get():
                raise  # inside Settings: reported with every other problem, at its key path
            source, index = _WHERE.get()
            raise _config_error(exc, source=source, index=index, name=data.get("name")) from None

    @field_validator("set")
    @classmethod
    def _settable(cls, v: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(v) - SETTABLE)
        if unknown:
            hint = "; use the `max_tokens` action to cap tokens" if "max_tokens" in unknown else ""
            close = errors.did_you_mean(unknown[0], SETTABLE)
            hint = hint or (f"; did you mean {close[0]!r}?" if close else f"; settable: {', '.join(sorted(SETTABLE))}")
            raise ValueError(f"cannot set {unknown[0]!r}{hint}")
        from ..types import ChatRequest  # validates the values as a request would
        try:
            probe = ChatRequest(model="x", messages=[{"role": "user", "content": "x"}], **v)
        except ValidationError as exc:
            e = exc.errors()[0]
            raise ValueError(f"{'.'.join(map(str, e['loc']))}: {e['msg']} (got {e.get('input')!r})") from None
        return {k: getattr(probe, k) for k in v}  # normalised as a request holds them (stop -> list)

    @model_validator(mode="after")
    def _actions(self) -> Rule:
        acts = [k for k in ("use", "max_tokens", "deny", "cache_ttl") if getattr(self, k) is not None]
        if self.set:
            acts.append("set")
        if not acts:
            raise ValueError("a rule needs an action: use, max_tokens, set, deny or cache_ttl")
        if self.deny is not None and len(acts) > 1:
            raise ValueError("`deny` cannot be combined with other actions")
        if self.when.kind == "embed" and (self.max_tokens is not None or self.set):
            raise ValueError("an embed rule (when.kind = \"embed\") takes use, deny or cache_ttl: "
                             "embeddings have no max_tokens or sampling parameters")
        return self

    def actions(self) -> dict[str, Any]:
        """The actions written, by name."""
        return {k: v for k, v in (("use", self.use), ("max_tokens", self.max_tokens), ("set", self.set),
                                  ("deny", self.deny), ("cache_ttl", self.cache_ttl)) if v not in (None, {})}


def rule_label(index: int | None, name: Any) -> str:
    """``rules[2] ("name")`` — how errors and findings point at a rule."""
    where = f"rules[{index}]" if index is not None else "rules"
    return f"{where} ({name!r})".replace("'", '"') if isinstance(name, str) and name else where


def _config_error(exc: ValidationError, *, source: str, index: int | None, name: Any) -> errors.ConfigError:
    e = exc.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    msg = e["msg"].removeprefix("Value error, ")
    if e["type"] == "extra_forbidden":
        close = errors.did_you_mean(str(e["loc"][-1]), _known_keys(e["loc"]))
        msg = "unknown key" + (f"; did you mean {close[0]!r}?" if close else "")
    elif e["type"] != "missing" and "input" in e and not isinstance(e["input"], Mapping):
        msg += f" (got {e['input']!r})"
    key = rule_label(index, name) + (f".{loc}" if loc else "")
    return errors.ConfigError(msg, file=source, key=key, value=e.get("input") if loc else None)


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    model = When if loc and loc[0] == "when" else Rule
    return list(model.model_fields)


def parse_rule(data: Rule | Mapping[str, Any], *, index: int | None, source: str) -> Rule:
    """One rule from a TOML table or a `Rule`; errors name ``source``, index, name and key."""
    if isinstance(data, Rule):
        return data
    if not isinstance(data, Mapping):
        raise errors.ConfigError(f"a rule must be a table (got {type(data).__name__})",
                                 file=source, key=rule_label(index, None), value=data)
    if not all(isinstance(k, str) for k in data):
        raise errors.ConfigError("rule keys must be strings", file=source, key=rule_label(index, None))
    token = _WHERE.set((source, index))
    try:
        return Rule(**data)
    finally:
        _WHERE.reset(token)


def check_targets(rules: Any, resolve: Any, price: Any, *, source: str) -> list[errors.ConfigError]:
    """Each rule's ``use`` target resolved (``resolve(name) -> ModelRef``) and priced
    (``price(ref)``) at load: a typo is an error naming the rule, not a failure at call time."""
    problems = []
    for i, rule in enumerate(rules):
        if rule.use is None:
            continue
        try:
            price(resolve(rule.use))
        except (errors.UnknownModelError, errors.MissingPriceError) as exc:
            problems.append(errors.ConfigError(f"the rule's target cannot be used: {exc}", file=source,
                                               key=rule_label(i, rule.name) + ".use", value=rule.use))
    return problems
