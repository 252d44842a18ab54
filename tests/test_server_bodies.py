"""Every malformed chat body the gateway is sent is a 4xx JSON error naming what is wrong,
never a 500 (hypothesis, 2,000 bodies against a served gateway over FakeProvider)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_server_support import make_served

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=6)
message = st.dictionaries(st.sampled_from(["role", "content", "name", "tool_calls", "tool_call_id"]),
                          st.one_of(st.sampled_from(["user", "system", "assistant", "tool", "hi"]), values),
                          max_size=4)
KEYS = ["model", "messages", "stream", "stream_options", "tools", "tool_choice", "response_format",
        "temperature", "top_p", "max_tokens", "max_completion_tokens", "stop", "seed", "n", "user",
        "metadata", "logit_bias", "frequency_penalty", "presence_penalty", "reasoning_effort",
        "parallel_tool_calls", "unillm", "extra_body", "cache"]
special = {"model": st.one_of(st.sampled_from(["gpt-4o-mini", "claude-sonnet-4-5", "nosuch"]), values),
           "messages": st.one_of(values, st.lists(message, max_size=3),
                                 st.just([{"role": "user", "content": "hi"}]))}
bodies = st.one_of(
    st.dictionaries(st.sampled_from(KEYS), values, max_size=5).flatmap(
        lambda d: st.fixed_dictionaries({k: special.get(k, values) for k in d})).map(json.dumps),
    values.map(json.dumps),
    st.binary(max_size=20).map(lambda b: b.decode("latin-1")),
)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    from unillm.testing import FakeProvider
    with FakeProvider() as fake:
        for served in make_served(fake, tmp_path_factory.mktemp("gw")):
            with httpx.Client(base_url=served.url, headers={"authorization": f"Bearer {served.admin}",
                                                            "content-type": "application/json"},
                              timeout=30) as http:
                yield http


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(body=bodies)
def test_every_malformed_body_is_a_4xx_json_error(gateway, body: str) -> None:
    with gateway.stream("POST", "/v1/chat/completions", content=body.encode("utf-8", "surrogatepass")) as resp:
        resp.read()
    assert resp.status_code < 500, (body, resp.status_code, resp.text)
    if resp.status_code >= 400:
        error: Any = resp.json()["error"]
        assert error["message"] and error["type"], resp.text
