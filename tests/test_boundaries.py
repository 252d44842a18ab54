"""Every public entry point validates at one boundary: whatever a caller passes to
``Client(...)``, ``chat``/``achat`` (``extra`` included), only `UnillmError` subclasses
escape, and each names the parameter or the setting (hypothesis, 2,000 examples a target)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unillm import ChatResponse, Client, errors
from unillm.config import Settings
from unillm.testing import FakeProvider

HI = [{"role": "user", "content": "hi"}]
EXAMPLES = settings(max_examples=2000, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.binary(max_size=4))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)), max_leaves=6)


@pytest.fixture(scope="module")
def fake():
    with FakeProvider() as server:
        yield server


@pytest.fixture(scope="module")
def client(fake):
    c = Client(providers=fake.providers(), ledger="off", cache="memory", sleep=lambda s: None)
    yield c
    c.close()


# ── Client(...) ──────────────────────────────────────────────────────────────

def _near() -> st.SearchStrategy[Any]:
    """Values close to what settings take, where type errors used to hide."""
    texts = st.one_of(st.text(max_size=10), st.sampled_from(
        ["", " ", "\x00", "off", "memory", "disk", "sqlite:", "sqlite:\x00.db", "sqlite:///\x00",
         "sqlite:///dev/null/x.db", "redis://", "postgresql://", "disk:///dev/null", "/", ".", "UTC"]))
    tables = st.dictionaries(st.sampled_from(["openai", "anthropic", "nosuch", "timeout", "name", "limit_usd",
                                              "use", "when", "model", "then", "webhook", "initial"]),
                             values, max_size=3)
    return st.one_of(values, texts, tables, st.lists(tables, max_size=2),
                     st.dictionaries(st.sampled_from(["openai", "google", "x"]), st.one_of(tables, values),
                                     max_size=2))


KEYS = [k for k in Settings.model_fields if k != "source"]
client_kwargs = st.dictionaries(st.sampled_from([*KEYS, "cachee", "rule"]), _near(), max_size=4)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    """Relative paths a generated setting names land here, not in the repository."""
    here = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("scratch"))
    yield Path.cwd()
    os.chdir(here)


configs = st.one_of(st.none(), _near(), st.sampled_from(["", "/", ".", "\x00", "unillm.toml", "bad.toml"]))


@EXAMPLES
@given(config=configs, kw=client_kwargs)
def test_only_config_errors_escape_client(scratch, config, kw) -> None:
    kw.setdefault("ledger", "off")
    (scratch / "bad.toml").write_bytes(b"\xff\xfe = 1")
    try:
        client = Client(config, **kw)
    except errors.ConfigError as exc:
        problems = getattr(exc, "problems", [exc])
        assert all(p.key or p.file for p in problems), f"{exc!r} names no setting"
        named = {*KEYS, *kw, "config", *(config if isinstance(config, dict) else ())}
        assert all(p.key is None or p.key in named or p.key.split(".")[0].split("[")[0].split(" ")[0] in named
                   for p in problems), exc
    else:
        client.close()


@pytest.mark.parametrize("kw, key", [
    ({"providers": {"openai": [None]}}, "providers.openai"),
    ({"pricing": ""}, "pricing"),
    ({"pricing": "/"}, "pricing"),
    ({"ledger": "sqlite:///tmp/a\x00b.db"}, "ledger"),
    ({"ledger": "sqlite:a\x00b.db"}, "ledger"),
    ({"cache_namespace": " "}, "cache_namespace"),
    ({"cache_namespace": 3}, "cache_namespace"),
    ({"aliases": {"a": "b", "b": "a"}}, "aliases"),     # was accepted, then failed every call
])
def test_known_escapes_are_config_errors_naming_the_setting(kw, key) -> None:
    with pytest.raises(errors.ConfigError) as info:
        Client(**{"ledger": "off", **kw})
    assert info.value.key == key, str(info.value)


@pytest.mark.parametrize("config, words", [
    ("", "a config file is a path"), (3, "a config file is a path"), (["a"], "a config file is a path"),
    ("/", "cannot be read"), ("\x00", "NUL byte"), ("bad.toml", "not UTF-8"),
    ({3: "x"}, "bad setting names"),
])
def test_a_config_that_is_not_a_readable_file_is_a_config_error(scratch, config, words) -> None:
    (scratch / "bad.toml").write_bytes(b"\xff\xfe = 1")   # these raised IsADirectoryError, ValueError,
    with pytest.raises(errors.ConfigError, match=words):    # TypeError and UnicodeDecodeError
        Client(config, ledger="off")


# ── chat / achat ─────────────────────────────────────────────────────────────

tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
messages = st.one_of(st.just(HI), values, st.lists(st.dictionaries(
    st.sampled_from(["role", "content", "name", "tool_calls", "tool_call_id"]),
    st.one_of(st.sampled_from(["user", "system", "assistant", "tool", "bogus"]), values), max_size=4),
    max_size=3))
#: keys an SDK takes as keyword arguments or request options, where its own errors hid
SDK_KEYS = ["timeout", "extra_headers", "extra_query", "extra_body", "metadata", "logit_bias", "logprobs",
            "top_logprobs", "service_tier", "store", "modalities", "prediction", "audio", "thinking",
            "system", "stop_sequences", "top_k", "tool_choice", "safety_settings", "config", "n", "x"]
extras = st.one_of(values, st.dictionaries(st.sampled_from(SDK_KEYS), values, max_size=3))
PARAMS = ["tools", "tool_choice", "response_format", "temperature", "top_p", "max_tokens", "stop", "seed",
          "frequency_penalty", "presence_penalty", "top_k", "reasoning_effort", "parallel_tool_calls",
          "user", "drop_params", "tags", "cache", "stream", "extra"]
special = {"tools": st.one_of(values, st.just([tool])), "extra": extras,
           "tool_choice": st.one_of(values, st.fixed_dictionaries({"type": st.just("function"),
                                                                   "function": values}))}
chat_kwargs = st.dictionaries(st.sampled_from(PARAMS), values, max_size=4).flatmap(
    lambda kw: st.fixed_dictionaries({k: special.get(k, values) for k in kw}))
models = st.one_of(st.sampled_from(["gpt-4o-mini", "claude-haiku-4-5", "command-r", "gemini-2.5-flash"]),
                   values)


def _named(exc: errors.UnillmError) -> None:
    if isinstance(exc, errors.InvalidRequestError):
        assert exc.param, f"{exc!r} names no parameter"


@EXAMPLES
@given(model=models, msgs=messages, kw=chat_kwargs)
def test_only_unillm_errors_escape_chat(client, model, msgs, kw) -> None:
    try:
        result = client.chat(model=model, messages=msgs, **kw)
        if not isinstance(result, ChatResponse):  # a stream: read (and so closed) here
            list(result)
    except errors.UnillmError as exc:
        _named(exc)


@EXAMPLES
@given(model=models, msgs=messages, kw=chat_kwargs)
def test_only_unillm_errors_escape_achat(client, model, msgs, kw) -> None:
    async def go() -> None:
        result = await client.achat(model=model, messages=msgs, **kw)
        if not isinstance(result, ChatResponse):  # a stream: closed on this loop, not by the GC
            async with result:
                async for _ in result:
                    pass
    try:
        asyncio.run(go())
    except errors.UnillmError as exc:
        _named(exc)


@pytest.mark.parametrize("extra, param", [
    ({"timeout": []}, "extra.timeout"),
    ({"timeout": "\x80"}, "extra.timeout"),
    ({"extra_headers": [""]}, "extra.extra_headers"),
])
def test_sdk_options_in_extra_are_refused_naming_the_key(client, extra, param) -> None:
    with pytest.raises(errors.InvalidRequestError) as info:
        client.chat(model="gpt-4o-mini", messages=HI, extra=extra)
    assert info.value.param == param
