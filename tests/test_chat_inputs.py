"""Inputs that once escaped ``chat()`` as plain Python errors are `InvalidRequestError`s
naming the parameter (the hypothesis search over every argument is in test_boundaries.py)."""

from __future__ import annotations

import math

import pytest

from unillm import Client, errors
from unillm.testing import FakeProvider

HI = [{"role": "user", "content": "hi"}]

tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}


@pytest.fixture(scope="module")
def client():
    with FakeProvider() as fake:
        c = Client(providers=fake.providers(), ledger="off", cache="memory", sleep=lambda s: None)
        yield c
        c.close()


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


@pytest.mark.parametrize("kw, param", [
    ({"extra": {"": b""}}, "extra"),              # found by test_boundaries: named no parameter
    ({"tool_choice": "auto"}, "tool_choice"),     # (both were checks on the request as a whole)
])
def test_request_wide_checks_name_their_parameter(client, kw, param) -> None:
    with pytest.raises(errors.InvalidRequestError) as info:
        client.chat(model="gpt-4o-mini", messages=HI, **kw)
    assert info.value.param == param
