"""Whatever a caller passes to ``chat()``, only `UnillmError` subclasses escape, and a bad
parameter is named (hypothesis over arbitrary keyword values)."""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unillm import Client, errors
from unillm.testing import FakeProvider

HI = [{"role": "user", "content": "hi"}]

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.binary(max_size=4))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=6)
tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
messages = st.one_of(st.just(HI), values, st.lists(st.dictionaries(
    st.sampled_from(["role", "content", "name", "tool_calls", "tool_call_id"]),
    st.one_of(st.sampled_from(["user", "system", "assistant", "tool", "bogus"]), values), max_size=4),
    max_size=3))
PARAMS = ["tools", "tool_choice", "response_format", "temperature", "top_p", "max_tokens", "stop", "seed",
          "frequency_penalty", "presence_penalty", "top_k", "reasoning_effort", "parallel_tool_calls",
          "user", "drop_params", "tags", "cache", "stream"]
# tool_choice and tools also get near-valid shapes, where type errors used to hide
special = {"tools": st.one_of(values, st.just([tool])),
           "tool_choice": st.one_of(values, st.fixed_dictionaries({"type": st.just("function"),
                                                                   "function": values}))}
kwargs = st.fixed_dictionaries({}, optional={p: special.get(p, values) for p in PARAMS})


@pytest.fixture(scope="module")
def client():
    with FakeProvider() as fake:
        c = Client(providers=fake.providers(), ledger="off", cache="memory", sleep=lambda s: None)
        yield c
        c.close()


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(model=st.one_of(st.sampled_from(["gpt-4o-mini", "claude-haiku-4-5", "command-r"]), values),
       msgs=messages, kw=kwargs)
def test_only_unillm_errors_escape_chat(client, model, msgs, kw) -> None:
    try:
        result = client.chat(model=model, messages=msgs, **kw)
        if kw.get("stream") is True:
            list(result)
    except errors.InvalidRequestError as exc:
        assert exc.param, f"{exc!r} names no parameter"
    except errors.UnillmError:
        pass


@pytest.mark.parametrize("kw, param", [
    ({"messages": None}, "messages"),
    ({"tools": [tool], "tool_choice": {"type": "function", "function": None}}, "tool_choice"),
    ({"tags": True}, "tags"),
    ({"tags": {"user": ["a"]}}, "tags"),
])
def test_type_errors_are_invalid_request_errors_naming_the_parameter(client, kw, param) -> None:
    kw = {"model": "gpt-4o-mini", "messages": HI, **kw}
    with pytest.raises(errors.InvalidRequestError) as info:
        client.chat(**kw)
    assert info.value.param == param or info.value.param.startswith(param)


def test_nan_is_not_a_temperature(client) -> None:
    with pytest.raises(errors.InvalidRequestError):
        client.chat(model="gpt-4o-mini", messages=HI, temperature=math.nan)
