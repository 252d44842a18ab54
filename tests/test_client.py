"""The Client pipeline as a user drives it: real SDKs against FakeProvider."""

from __future__ import annotations

import asyncio
import inspect
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from pydantic import BaseModel

import unillm
from unillm import Client, errors
from unillm.testing import FakeProvider, Reply

ROOT = Path(__file__).resolve().parents[1]
HI = [{"role": "user", "content": "hi"}]


class Sleeps(list):
    """An injected sleep that records how long the client asked to wait."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(fake: FakeProvider, sleeps: Sleeps) -> Client:
    return Client(providers=fake.providers(), sleep=sleeps, asleep=sleeps.asleep, ledger="off")


# ── the contract in the issue ────────────────────────────────────────────────

def test_chat_returns_openai_shaped_response(client: Client, fake: FakeProvider) -> None:
    fake.queue(Reply(text="Hello there", usage={"input_tokens": 12, "output_tokens": 3}))
    r = client.chat(model="gpt-4o-mini", messages=HI, max_tokens=50)
    assert r.choices[0].message.content == "Hello there"
    assert r.choices[0].finish_reason == "stop"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == (12, 3, 15)
    assert r.provider == "openai" and r.model == "gpt-4o-mini"
    assert fake.requests[-1].json["max_tokens"] == 50 or fake.requests[-1].json["max_completion_tokens"] == 50


async def test_achat_and_async_stream(client: Client, fake: FakeProvider) -> None:
    fake.queue(Reply(text="async answer"), Reply(text="streamed async answer"))
    r = await client.achat(model="gpt-4o-mini", messages=HI)
    assert r.content == "async answer"
    stream = await client.achat(model="gpt-4o-mini", messages=HI, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "streamed async answer"
    assert stream.response is not None and stream.response.content == text


def test_sync_stream_collects_response(client: Client, fake: FakeProvider) -> None:
    fake.queue(Reply(text="one two three", usage={"input_tokens": 5, "output_tokens": 3}))
    stream = client.chat(model="gpt-4o-mini", messages=HI, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "one two three"
    assert stream.response.usage.output_tokens == 3
    assert fake.requests[-1].json["stream_options"] == {"include_usage": True}


def test_from_config_reads_toml(tmp_path: Path, fake: FakeProvider) -> None:
    cfg = tmp_path / "unillm.toml"
    cfg.write_text(f'ledger = "off"\n[providers.openai]\nbase_url = "{fake.base_url("openai")}"\n'
                   f'api_key = "from-file"\n[aliases]\nfast = "openai/gpt-4o-mini"\n')
    c = Client.from_config(cfg)
    assert c.chat(model="fast", messages=HI).model == "gpt-4o-mini"
    assert fake.requests[-1].headers["authorization"] == "Bearer from-file"
    # constructor arguments win over the file
    c2 = Client.from_config(cfg, providers={"openai": {"api_key": "from-kwargs"}})
    c2.chat(model="fast", messages=HI)
    assert fake.requests[-1].headers["authorization"] == "Bearer from-kwargs"


def test_api_key_from_profile_env_var(fake: FakeProvider, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    c = Client(providers={"openai": {"base_url": fake.base_url("openai")}}, ledger="off")
    c.chat(model="gpt-4o-mini", messages=HI)
    assert fake.requests[-1].headers["authorization"] == "Bearer from-env"


def test_structured_output_from_pydantic_class(client: Client, fake: FakeProvider) -> None:
    class City(BaseModel):
        name: str
        population: int

    fake.queue(Reply(text='{"name": "Oslo", "population": 709000}'))
    r = client.chat(model="gpt-4o-mini", messages=HI, response_format=City)
    assert r.choices[0].message.parsed == City(name="Oslo", population=709000)
    sent = fake.requests[-1].json["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["schema"]["required"] == ["name", "population"]


# ── retries ──────────────────────────────────────────────────────────────────

def test_retries_retryable_errors_then_succeeds(client: Client, fake: FakeProvider, sleeps: Sleeps) -> None:
    fake.queue(Reply(status=503, error="overloaded"), Reply(status=500, error="boom"), Reply(text="third time"))
    r = client.chat(model="gpt-4o-mini", messages=HI)
    assert r.content == "third time"
    assert len(fake.requests) == 3                      # observed at the server
    assert len(sleeps) == 2 and sleeps[1] >= sleeps[0] * 1.0 - 0.5  # exponential-ish backoff


def test_retry_after_is_honoured(client: Client, fake: FakeProvider, sleeps: Sleeps) -> None:
    fake.queue(Reply(status=429, error="slow down", headers={"retry-after": "7"}), Reply(text="ok"))
    assert client.chat(model="gpt-4o-mini", messages=HI).content == "ok"
    assert sleeps == [7.0]


def test_retries_give_up_after_max_retries(fake: FakeProvider, sleeps: Sleeps) -> None:
    c = Client(providers=fake.providers(), sleep=sleeps, ledger="off")
    c2 = Client(providers={"openai": {**fake.providers("openai")["openai"], "max_retries": 1}},
                sleep=sleeps, ledger="off")
    fake.queue(*[Reply(status=500, error="down")] * 3)
    with pytest.raises(errors.ServerError) as info:
        c.chat(model="gpt-4o-mini", messages=HI)
    assert len(fake.requests) == 3 and info.value.status_code == 500  # 1 + max_retries (2)
    fake.reset()
    fake.queue(*[Reply(status=500, error="down")] * 2)
    with pytest.raises(errors.ServerError):
        c2.chat(model="gpt-4o-mini", messages=HI)
    assert len(fake.requests) == 2


@pytest.mark.parametrize("status,exc", [(401, errors.AuthenticationError), (400, errors.BadRequestError),
                                        (403, errors.PermissionDeniedError), (404, errors.NotFoundError)])
def test_non_retryable_errors_are_not_retried(client: Client, fake: FakeProvider, status: int,
                                              exc: type) -> None:
    fake.queue(Reply(status=status, error="nope"))
    with pytest.raises(exc) as info:
        client.chat(model="gpt-4o-mini", messages=HI)
    assert len(fake.requests) == 1
    assert info.value.__cause__ is not None          # raised `from` the SDK's exception
    assert info.value.provider == "openai" and info.value.status_code == status


async def test_async_retries(client: Client, fake: FakeProvider, sleeps: Sleeps) -> None:
    fake.queue(Reply(status=429, error="x", headers={"retry-after": "2"}), Reply(text="ok"))
    assert (await client.achat(model="gpt-4o-mini", messages=HI)).content == "ok"
    assert sleeps == [2.0] and len(fake.requests) == 2


def test_stream_open_is_retried(client: Client, fake: FakeProvider) -> None:
    fake.queue(Reply(status=503, error="busy"), Reply(text="streamed"))
    stream = client.chat(model="gpt-4o-mini", messages=HI, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "streamed"
    assert len(fake.requests) == 2


def test_secret_never_in_error_message(fake: FakeProvider) -> None:
    secret = "sk-live-verysecret-123456"
    c = Client(providers={"openai": {"base_url": fake.base_url("openai"), "api_key": secret}}, ledger="off")
    fake.queue(Reply(status=401, error="Incorrect API key provided"))
    with pytest.raises(errors.AuthenticationError) as info:
        c.chat(model="gpt-4o-mini", messages=HI)
    assert secret not in str(info.value) and secret not in repr(c.providers["openai"])


# ── bad input never reaches the network ──────────────────────────────────────

@pytest.mark.parametrize("messages,fragment", [
    ([{"role": "usr", "content": "x"}], "messages.0.role"),
    ([{"role": "user", "content": ""}], "non-empty 'content'"),
    ([{"role": "user"}], "non-empty 'content'"),
    ([], "messages"),
    ([{"role": "tool", "content": "42"}], "tool_call_id"),
    ([{"role": "user", "content": {"not": "a string"}}], "messages.0.content"),
    ([{"role": "user", "content": "x", "bogus": 1}], "bogus"),
])
def test_bad_messages_fail_before_network(client: Client, fake: FakeProvider, messages: list,
                                          fragment: str) -> None:
    with pytest.raises(errors.InvalidRequestError, match=fragment.replace(".", r"\.")):
        client.chat(model="gpt-4o-mini", messages=messages)
    assert fake.requests == []


def test_non_json_serialisable_values_fail_before_network(client: Client, fake: FakeProvider) -> None:
    with pytest.raises(errors.InvalidRequestError, match="JSON"):
        client.chat(model="gpt-4o-mini", messages=HI, extra={"when": object()})
    with pytest.raises(errors.InvalidRequestError):
        client.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": object()}])
    assert fake.requests == []


@pytest.mark.parametrize("params,fragment", [
    ({"temprature": 0.2}, "did you mean 'temperature'"),
    ({"temperature": 3}, "temperature"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"tool_choice": "required"}, "tool_choice given without tools"),
])
def test_bad_params_fail_before_network(client: Client, fake: FakeProvider, params: dict,
                                        fragment: str) -> None:
    with pytest.raises(errors.InvalidRequestError, match=fragment):
        client.chat(model="gpt-4o-mini", messages=HI, **params)
    assert fake.requests == []


def test_unknown_model_suggests_close_matches(client: Client, fake: FakeProvider) -> None:
    with pytest.raises(errors.UnknownModelError) as info:
        client.chat(model="gtp-4o-mini", messages=HI)          # matches no provider's names
    assert "gpt-4o-mini" in str(info.value)
    # a typo inside a provider's name pattern is refused by the price book, before sending
    with pytest.raises(errors.MissingPriceError, match="openai/gpt-4o-mini"):
        client.chat(model="gpt-4o-mnii", messages=HI)
    with pytest.raises(errors.UnknownModelError, match="no provider named 'nosuch'"):
        client.chat(model="nosuch/model", messages=HI)
    assert fake.requests == []


def test_config_errors_name_file_key_and_value(tmp_path: Path) -> None:
    cfg = tmp_path / "unillm.toml"
    cfg.write_text('cach = "off"\n')
    with pytest.raises(errors.ConfigError, match=r"unillm\.toml.*cach: unknown key"):
        Client.from_config(cfg)
    cfg.write_text('[providers.openai]\ntimeout = "soon"\n')
    with pytest.raises(errors.ConfigError, match=r"providers\.openai\.timeout.*'soon'"):
        Client.from_config(cfg)
    cfg.write_text('ledger = \n')
    with pytest.raises(errors.ConfigError, match="not valid TOML"):
        Client.from_config(cfg)


# ── shape of the package ─────────────────────────────────────────────────────

def test_import_loads_no_sdk() -> None:
    code = ("import sys, unillm; from unillm import Client, errors; "
            "print([m for m in ('openai', 'anthropic', 'google.genai', 'cohere', 'tiktoken', "
            "'sqlite3', 'diskcache', 'tenacity') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_chat_and_achat_have_the_same_signature() -> None:
    sync, asyn = inspect.signature(Client.chat), inspect.signature(Client.achat)
    assert sync.parameters == asyn.parameters
    assert inspect.iscoroutinefunction(Client.achat)


def test_public_errors_are_reachable_from_the_package() -> None:
    assert unillm.RateLimitError is errors.RateLimitError
    assert issubclass(errors.ContextWindowExceededError, errors.BadRequestError)
    assert all(issubclass(getattr(errors, n), errors.UnillmError) for n in errors.__all__ if n[0].isupper())


@pytest.mark.slow
def test_wheel_ships_price_book_and_profiles(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    wheel = next(tmp_path.glob("unillm-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "unillm/_data/pricing.toml" in names
    assert "unillm/py.typed" in names  # PEP 561: type checkers read the package's own annotations
    assert {"unillm/_data/providers/openai.toml", "unillm/_data/providers/groq.toml"} <= set(names)
    entry = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "unillm = unillm.cli:main" in entry
    # installed from the wheel (no repo beside it), the data is found
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target",
                    str(target), str(wheel)], check=True)
    code = ("import unillm.profiles as p; d = p.data_dir(); "
            "print(d, (d / 'pricing.toml').exists(), len(p.bundled_profiles()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path, env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"})
    path, exists, count = out.stdout.split()
    assert path.startswith(str(target)) and exists == "True" and int(count) >= 12


def test_profiles_are_valid_and_cover_the_vendors() -> None:
    from unillm.profiles import bundled_profiles, build_settings
    settings = build_settings()
    required = {"openai", "anthropic", "google", "cohere", "groq", "mistral", "together", "deepseek",
                "openrouter", "xai", "fireworks", "ollama"}
    assert required <= set(settings)
    from unillm.adapters import registry
    for name, p in settings.items():
        if registry.get(p.adapter).settings:  # a cloud's URL and credentials are the user's
            continue
        assert p.base_url and p.base_url.startswith("http"), name
        assert p.api_key_env, name
    assert json.dumps(sorted(bundled_profiles()))  # serialisable names


@pytest.mark.slow
def test_sdist_ships_the_tests_with_their_payloads(tmp_path: Path) -> None:
    import tarfile
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path), str(ROOT)],
                   check=True, capture_output=True)
    with tarfile.open(next(tmp_path.glob("unillm-*.tar.gz"))) as sdist:
        names = {n.split("/", 1)[1] for n in sdist.getnames() if "/" in n}
    tracked = subprocess.run(["git", "ls-files", "tests/data"], cwd=ROOT, capture_output=True, text=True)
    wanted = set(tracked.stdout.split()) or {"tests/data/refs/tokens.json"}
    assert wanted <= names, sorted(wanted - names)[:5]   # every fixture the tests read
    assert {"tests/conftest.py", "tests/data/refs/README.md"} <= names


class _Tags(dict):  # type: ignore[type-arg]
    """A dict subclass: takes the general path of tag checking, not the plain-dict one."""


@pytest.mark.parametrize("tags, kept", [
    ({"team": "a", "user": "u1"}, {"team": "a", "user": "u1"}),    # the usual case
    ({"n": 3, "f": 1.5, "ok": True}, {"n": "3", "f": "1.5", "ok": "True"}),  # numbers become text
    (_Tags(team="a", n=2), {"team": "a", "n": "2"}),
    ({}, {}),
])
def test_call_tags_are_kept_as_text_and_the_callers_dict_is_not_shared(
        fake: FakeProvider, tags: dict[str, object], kept: dict[str, str]) -> None:
    client = Client(providers=fake.providers(), ledger="sqlite:///:memory:", tags={"app": "x"})
    tags_before = dict(tags)
    client.chat(model="gpt-4o-mini", messages=HI, tags=tags)
    [row] = client.ledger.records()
    assert row.tags == {"app": "x", **kept}
    assert tags == tags_before and "app" not in tags  # the caller's dict was not written to


@pytest.mark.parametrize("tags", [
    {1: "a"},                      # a name that is not a string
    {"team": None},
    {"team": {"nested": "x"}},
    {"team": ["a"]},
    {"team": b"bytes"},
    _Tags(team=None),
    [("team", "a")],               # not a mapping
    "team=a",
])
def test_bad_call_tags_are_one_invalid_request_error_and_nothing_is_sent(fake: FakeProvider, tags: object) -> None:
    client = Client(providers=fake.providers(), ledger="sqlite:///:memory:")
    with pytest.raises(errors.InvalidRequestError) as exc:
        client.chat(model="gpt-4o-mini", messages=HI, tags=tags)  # type: ignore[arg-type]
    assert exc.value.param == "tags"
    assert fake.requests == [] and list(client.ledger.records()) == []


@pytest.mark.parametrize("stream", [1, 0, 1.0, "false", "yes", [True]])
def test_stream_is_true_or_false_and_anything_else_is_refused_before_sending(fake: FakeProvider, stream: object) -> None:
    """``stream="false"`` used to stream (any truthy value did), and ``achat(stream=1.0)``
    opened an upstream response the caller never knew to close."""
    client = Client(providers=fake.providers(), ledger="sqlite:///:memory:")
    with pytest.raises(errors.InvalidRequestError) as exc:
        client.chat(model="gpt-4o-mini", messages=HI, stream=stream)  # type: ignore[call-overload]
    assert exc.value.param == "stream"
    with pytest.raises(errors.InvalidRequestError) as exc:
        asyncio.run(client.achat(model="gpt-4o-mini", messages=HI, stream=stream))  # type: ignore[call-overload]
    assert exc.value.param == "stream"
    with pytest.raises(errors.InvalidRequestError):
        client.explain("gpt-4o-mini", HI, stream=stream)  # type: ignore[arg-type]
    assert fake.requests == [] and list(client.ledger.records()) == []
    assert client.chat(model="gpt-4o-mini", messages=HI, stream=None).content  # type: ignore[call-overload]
