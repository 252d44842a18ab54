"""The cache key: different answers never share a key, equivalent requests always do."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from unillm.cache import KEY_SCHEMA_VERSION, cache_key
from unillm.cache.key import canonical_payload
from unillm.profiles import ModelRef
from unillm.types import ChatRequest, Message

REF = ModelRef("openai", "gpt-4o-mini", "openai")
ROOT = Path(__file__).resolve().parents[1]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ── strategies ───────────────────────────────────────────────────────────────

text = st.text(max_size=12)
name = st.text(alphabet="abcdefghij_", min_size=1, max_size=6)
json_scalar = st.none() | st.booleans() | st.integers(-10**6, 10**6) | \
    st.floats(allow_nan=False, allow_infinity=False, width=32) | text
json_value = st.recursive(json_scalar, lambda inner: st.lists(inner, max_size=3)
                          | st.dictionaries(name, inner, max_size=3), max_leaves=6)

messages = st.lists(st.tuples(st.sampled_from(["system", "user", "assistant"]), st.text(min_size=1, max_size=20)),
                    min_size=1, max_size=4)
tools = st.lists(st.tuples(name, st.none() | text, st.dictionaries(name, json_value, max_size=2)),
                 min_size=1, max_size=3, unique_by=lambda t: t[0])
response_formats = st.sampled_from([
    {"type": "text"}, {"type": "json_object"},
    {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}},
    {"type": "json_schema", "json_schema": {"name": "b", "schema": {"type": "object"}}},
    {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "array"}}},
    {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}, "strict": True}},
])

# every output-affecting parameter, with values that include "unset"
PARAMS: dict[str, st.SearchStrategy[Any]] = {
    "temperature": st.none() | st.floats(0, 2),
    "top_p": st.none() | st.floats(0, 1),
    "max_tokens": st.none() | st.integers(1, 10**6),
    "stop": st.none() | st.lists(st.text(min_size=1, max_size=4), min_size=1, max_size=3, unique=True),
    "seed": st.none() | st.integers(-2**63, 2**63 - 1),
    "frequency_penalty": st.none() | st.floats(-2, 2),
    "presence_penalty": st.none() | st.floats(-2, 2),
    "top_k": st.none() | st.integers(1, 500),
    "reasoning_effort": st.none() | st.sampled_from(["minimal", "low", "medium", "high"]),
    "parallel_tool_calls": st.none() | st.booleans(),
    "response_format": st.none() | response_formats,
    "extra": st.dictionaries(name, json_value, max_size=3),
}


@st.composite
def requests(draw: Any) -> dict[str, Any]:
    """Keyword arguments of a valid ChatRequest, with a random subset of parameters set."""
    kw: dict[str, Any] = {"model": "x", "messages": _msgs(draw(messages))}
    for field in draw(st.sets(st.sampled_from(sorted(PARAMS)))):
        value = draw(PARAMS[field])
        if value is not None:
            kw[field] = value
    if draw(st.booleans()):
        kw["tools"] = _tools(draw(tools))
        choice = draw(st.none() | st.sampled_from(["auto", "none", "required", "pick"]))
        if choice == "pick":
            choice = {"type": "function", "function": {"name": kw["tools"][0]["function"]["name"]}}
        if choice is not None:
            kw["tool_choice"] = choice
    return kw


def _msgs(pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    return [{"role": role, "content": content} for role, content in pairs]


def _tools(specs: list[tuple[str, str | None, dict[str, Any]]]) -> list[dict[str, Any]]:
    out = []
    for fname, desc, props in specs:
        fn: dict[str, Any] = {"name": fname, "parameters": {"type": "object", "properties": props}}
        if desc is not None:
            fn["description"] = desc
        out.append({"type": "function", "function": fn})
    return out


def key(kw: dict[str, Any], ref: ModelRef = REF, namespace: str = "default") -> str:
    return cache_key(ref, ChatRequest(**kw), namespace=namespace)


def same(a: Any, b: Any) -> bool:
    """JSON-level equivalence, written independently of the key code: numbers by value
    (1 == 1.0), but a bool is never a number; dicts ignore order, lists do not."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def equivalent(field: str, a: Any, b: Any) -> bool:
    if field == "stop" and a is not None and b is not None:
        return sorted(a) == sorted(b)
    return same(a, b)


# ── different answers never share a key ──────────────────────────────────────

@SETTINGS
@given(base=requests(), field=st.sampled_from(sorted(PARAMS)), data=st.data())
def test_changing_any_output_parameter_changes_the_key(base: dict[str, Any], field: str, data: Any) -> None:
    a, b = data.draw(PARAMS[field]), data.draw(PARAMS[field])
    assume(not equivalent(field, a, b))
    ka = key({**{k: v for k, v in base.items() if k != field}, **({field: a} if a is not None else {})})
    kb = key({**{k: v for k, v in base.items() if k != field}, **({field: b} if b is not None else {})})
    assert ka != kb, f"{field}: {a!r} and {b!r} share a key"


@SETTINGS
@given(base=requests(), a=messages, b=messages)
def test_different_messages_never_share_a_key(base: dict[str, Any], a: Any, b: Any) -> None:
    assume(a != b)
    assert key({**base, "messages": _msgs(a)}) != key({**base, "messages": _msgs(b)})


@SETTINGS
@given(base=requests(), a=tools, b=tools)
def test_different_tools_never_share_a_key(base: dict[str, Any], a: Any, b: Any) -> None:
    assume(not same(_tools(a), _tools(b)))
    base = {k: v for k, v in base.items() if k != "tool_choice"}
    assert key({**base, "tools": _tools(a)}) != key({**base, "tools": _tools(b)})


@SETTINGS
@given(base=requests())
def test_tool_choice_is_in_the_key(base: dict[str, Any]) -> None:
    base = {**base, "tools": _tools([("f", None, {}), ("g", None, {})])}
    choices = [None, "auto", "none", "required", {"type": "function", "function": {"name": "f"}},
               {"type": "function", "function": {"name": "g"}}]
    keys = {key({**base, "tool_choice": c} if c else {k: v for k, v in base.items() if k != "tool_choice"})
            for c in choices}
    assert len(keys) == len(choices)


@SETTINGS
@given(base=requests(), providers=st.lists(name, min_size=2, max_size=2, unique=True),
       models=st.lists(name, min_size=2, max_size=2, unique=True),
       spaces=st.lists(name, min_size=2, max_size=2, unique=True))
def test_provider_model_and_namespace_are_in_the_key(base: dict[str, Any], providers: list[str],
                                                     models: list[str], spaces: list[str]) -> None:
    r1, r2 = ModelRef(providers[0], models[0], "openai"), ModelRef(providers[1], models[0], "openai")
    r3 = ModelRef(providers[0], models[1], "openai")
    assert len({key(base, r1), key(base, r2), key(base, r3)}) == 3
    assert key(base, r1, spaces[0]) != key(base, r1, spaces[1])


def test_text_parts_and_images_are_in_the_key() -> None:
    img = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    variants = [
        [{"type": "text", "text": "hi"}, img],
        [img, {"type": "text", "text": "hi"}],
        [{"type": "text", "text": "hi"}, {**img, "image_url": {"url": "https://example.com/b.png"}}],
        [{"type": "text", "text": "hi"}, {**img, "image_url": {**img["image_url"], "detail": "low"}}],
        [{"type": "text", "text": "h"}, {"type": "text", "text": "i"}],
        "hi",
    ]
    keys = {key({"model": "x", "messages": [{"role": "user", "content": c}]}) for c in variants}
    assert len(keys) == len(variants)


# ── equivalent requests always share a key ───────────────────────────────────

def _shuffled(value: Any, rnd: random.Random) -> Any:
    """The same JSON with every dict's key order shuffled, and integral numbers flipped
    between int and float."""
    if isinstance(value, dict):
        items = list(value.items())
        rnd.shuffle(items)
        return {k: _shuffled(v, rnd) for k, v in items}
    if isinstance(value, list):
        return [_shuffled(v, rnd) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, int) and abs(value) < 2**53:
        return float(value)
    return value


@SETTINGS
@given(kw=requests(), seed=st.integers(0, 2**32), as_objects=st.booleans(),
       user=st.none() | text, alias=name, drop=st.booleans())
def test_equivalent_requests_share_a_key(kw: dict[str, Any], seed: int, as_objects: bool,
                                         user: str | None, alias: str, drop: bool) -> None:
    rnd = random.Random(seed)
    twin = _shuffled(kw, rnd)
    for field in ("max_tokens", "seed", "top_k"):  # int-typed fields stay ints
        if field in kw:
            twin[field] = kw[field]
    if "stop" in kw:
        twin["stop"] = kw["stop"][0] if len(kw["stop"]) == 1 else list(reversed(kw["stop"]))
    for field in set(PARAMS) - {"extra"}:  # an explicit None is an unset field
        twin.setdefault(field, None)
    if as_objects:
        twin["messages"] = [Message(**m) for m in twin["messages"]]
    else:
        twin["messages"] = [{**m, "content": [{"type": "text", "text": m["content"]}], "name": None}
                            for m in twin["messages"]]
    twin.update(model=alias, user=user, drop_params=drop)  # not part of what the vendor answers
    assert key(twin) == key(kw)


def test_numeric_forms_and_stop_forms_are_equivalent() -> None:
    msgs = [{"role": "user", "content": "hi"}]
    assert key({"model": "a", "messages": msgs, "temperature": 1}) == \
        key({"model": "b", "messages": msgs, "temperature": 1.0})
    assert key({"model": "a", "messages": msgs, "stop": "x"}) == key({"model": "a", "messages": msgs, "stop": ["x"]})
    assert key({"model": "a", "messages": msgs, "extra": {"top_logprobs": 2, "o": {"a": 1, "b": 0.5}}}) == \
        key({"model": "a", "messages": msgs, "extra": {"o": {"b": 0.5, "a": 1.0}, "top_logprobs": 2.0}})
    assert key({"model": "a", "messages": msgs, "extra": {"flag": True}}) != \
        key({"model": "a", "messages": msgs, "extra": {"flag": 1}})
    assert key({"model": "a", "messages": msgs, "extra": {"v": None}}) != key({"model": "a", "messages": msgs})


def test_tags_and_client_options_are_not_in_the_payload() -> None:
    payload = canonical_payload(REF, ChatRequest(model="alias", messages=[{"role": "user", "content": "hi"}],
                                                 user="u42", drop_params=True))
    flat = json.dumps(payload)
    assert "alias" not in flat and "u42" not in flat and "drop_params" not in flat
    assert payload["v"] == KEY_SCHEMA_VERSION and payload["ns"] == "default"


# ── stable across processes and versions ─────────────────────────────────────

GOLDEN_REQUEST = {"model": "fast", "messages": [{"role": "system", "content": "Be terse."},
                                                {"role": "user", "content": "2+2? Réponds 🙂"}],
                  "temperature": 0, "max_tokens": 5, "stop": ["\n"], "extra": {"logprobs": True}}
# Changing this value means every cached answer in the world becomes unreachable:
# only ever change it together with KEY_SCHEMA_VERSION.
GOLDEN_KEY = "ccf18e74b96c4b9e740049d95b8581ba7e965f2af4775b63d7db4d6a2883d0d9"


def test_key_is_stable_across_processes_and_hash_seeds() -> None:
    code = ("import json,sys; from unillm.cache import cache_key; from unillm.profiles import ModelRef;"
            "from unillm.types import ChatRequest;"
            "print(cache_key(ModelRef('openai','gpt-4o-mini','openai'), ChatRequest(**json.loads(sys.argv[1]))))")
    keys = set()
    for seed in ("1", "2", "random"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT)}
        out = subprocess.run([sys.executable, "-c", code, json.dumps(GOLDEN_REQUEST)], env=env,
                             capture_output=True, text=True, check=True, timeout=60)
        keys.add(out.stdout.strip())
    assert keys == {key(GOLDEN_REQUEST)}


def test_key_matches_the_pinned_value_of_this_schema_version() -> None:
    assert KEY_SCHEMA_VERSION == 1
    assert key(GOLDEN_REQUEST) == GOLDEN_KEY


def test_key_is_fast() -> None:
    kw = {"model": "x", "messages": [{"role": "user", "content": "hello " * 50}] * 4, "temperature": 0.2,
          "tools": _tools([("f", "d", {"a": {"type": "string"}})])}
    req = ChatRequest(**kw)
    times = []
    for _ in range(201):
        t0 = time.perf_counter()
        cache_key(REF, req)
        times.append(time.perf_counter() - t0)
    median = sorted(times)[100]
    assert median < 0.002, f"cache_key took {median * 1e6:.0f} µs"  # ~20 µs on a laptop


def test_namespace_must_be_a_name() -> None:
    with pytest.raises(ValueError):
        cache_key(REF, ChatRequest(**GOLDEN_REQUEST), namespace="")


def test_no_message_field_can_hold_a_float() -> None:
    """`canonical_payload` skips the float canonicalization over messages because a `Message`
    (its parts, tool calls, ...) types every field as text, a literal, a bool or an int: a
    float-typed (or untyped) field added there must bring that canonicalization back."""
    import types as pytypes
    import typing

    from pydantic import BaseModel

    from unillm.types import Message

    seen: set[type] = set()

    def check(annotation: Any, where: str) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in seen:
                seen.add(annotation)
                for name, field in annotation.model_fields.items():
                    check(field.annotation, f"{annotation.__name__}.{name}")
            return
        args = typing.get_args(annotation)
        if args and (typing.get_origin(annotation) in (list, tuple, typing.Union, pytypes.UnionType)):
            for arg in args:
                check(arg, where)
            return
        if typing.get_origin(annotation) is typing.Literal:
            assert all(not isinstance(a, float) for a in args), where
            return
        assert annotation in (str, int, bool, type(None)), f"{where}: {annotation!r}"

    check(Message, "Message")
    assert len(seen) > 3  # parts and tool calls were walked too
