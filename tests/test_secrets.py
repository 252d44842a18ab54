"""Secrets never surface (issue 13, finding 11): not in settings reprs or dumps, and not in an
error, however the vendor echoes the key back: str, repr, body, the chained SDK exception,
tracebacks, pickles, unillm's logs."""

from __future__ import annotations

import json
import logging
import pickle
import traceback

import pytest

from unillm import Client, errors
from unillm.errors import REDACTED, Redactor
from unillm.testing import FakeProvider, Reply

HI = [{"role": "user", "content": "hi"}]
KEY = "sk-live-verysecret-0123456789abcdef"
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "google": "gemini-2.5-flash",
          "cohere": "command-r7b"}
# how a vendor echoes a key: whole (the issue), truncated, masked in the middle (OpenAI's 401)
ECHOES = [f"Incorrect API key provided: {KEY}.",
          f"Incorrect API key provided: {KEY[:12]}{'*' * 20}{KEY[-4:]}.",
          f"invalid x-api-key {KEY[:-6]}"]


def _client(fake: FakeProvider, provider: str, tmp_path) -> Client:
    return Client(providers={provider: {"base_url": fake.base_url(_protocol(provider)),
                                        "api_key": KEY}},
                  ledger=f"sqlite:///{tmp_path}/l.db", sleep=lambda s: None)


def _protocol(provider: str) -> str:
    return provider  # the four native vendors speak their own protocol


def _every_view(err: BaseException) -> str:
    """Everything a user, a log line or another process may see of an error."""
    views = [str(err), repr(err), json.dumps(getattr(err, "body", None), default=str),
             "".join(traceback.format_exception(type(err), err, err.__traceback__))]
    data = pickle.dumps(err)
    back = pickle.loads(data)
    views += [data.decode("latin-1"), str(back), repr(back), json.dumps(getattr(back, "body", None), default=str)]
    cause = err.__cause__ or err.__context__
    while cause is not None:
        views += [str(cause), repr(cause), repr(vars(cause))]
        cause = cause.__cause__ or cause.__context__
    return "\n".join(views)


def _assert_clean(text: str) -> None:
    assert KEY not in text
    assert KEY[:12] not in text and KEY[-10:] not in text


@pytest.mark.parametrize("echo", ECHOES)
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider", list(MODELS))
def test_a_key_echoed_in_a_401_surfaces_nowhere(fake, tmp_path, caplog, provider, stream, echo) -> None:
    client = _client(fake, provider, tmp_path)
    fake.queue(Reply(status=401, error=echo))
    with caplog.at_level(logging.DEBUG, logger="unillm"), pytest.raises(errors.AuthenticationError) as info:
        list(client.chat(model=f"{provider}/{MODELS[provider]}", messages=HI, stream=stream))
    err = info.value
    assert err.__cause__ is not None                   # still chained to the SDK's exception
    assert REDACTED in str(err) or REDACTED in json.dumps(err.body, default=str)
    _assert_clean(_every_view(err))
    _assert_clean(caplog.text)


@pytest.mark.parametrize("provider", list(MODELS))
async def test_async_errors_are_redacted_too(fake, tmp_path, provider) -> None:
    client = _client(fake, provider, tmp_path)
    fake.queue(Reply(status=401, error=ECHOES[0]))
    with pytest.raises(errors.AuthenticationError) as info:
        await client.achat(model=f"{provider}/{MODELS[provider]}", messages=HI)
    _assert_clean(_every_view(info.value))


def test_a_key_in_a_credential_header_is_redacted(fake, tmp_path) -> None:
    token = "tok-header-secret-987654321"
    client = Client(providers={"openai": {"base_url": fake.base_url("openai"), "api_key": KEY,
                                          "headers": {"X-Proxy-Authorization": f"Bearer {token}"}}},
                    ledger="off")
    fake.queue(Reply(status=403, error=f"proxy refused Bearer {token}"))
    with pytest.raises(errors.PermissionDeniedError) as info:
        client.chat(model="gpt-4o-mini", messages=HI)
    assert token not in _every_view(info.value)
    assert fake.requests[-1].headers["x-proxy-authorization"] == f"Bearer {token}"  # still sent


def test_settings_never_print_provider_keys(tmp_path) -> None:
    cfg = tmp_path / "unillm.toml"
    cfg.write_text(f'[providers.anthropic]\napi_key = "{KEY}"\n')
    client = Client.from_config(cfg, providers={"openai": {"api_key": KEY + "-kw",
                                                           "headers": {"Authorization": f"Bearer {KEY}x"}}},
                                ledger="off")
    for text in (repr(client.settings), str(client.settings), client.settings.model_dump_json(),
                 repr(client.settings.model_dump()), repr(client.providers)):
        assert KEY not in text
    # the keys still work: they are only hidden
    assert client.providers["anthropic"].resolved_api_key() == KEY
    assert client.providers["openai"].resolved_api_key() == KEY + "-kw"
    assert client.providers["openai"].headers["Authorization"] == f"Bearer {KEY}x"


def test_the_redactor_catches_whole_truncated_and_masked_echoes() -> None:
    r = Redactor([KEY])
    for echo in ECHOES:
        assert KEY[:12] not in r.text(echo) and REDACTED in r.text(echo)
    assert r.text("gpt-4o-mini answered sk-other-key-unrelated") == "gpt-4o-mini answered sk-other-key-unrelated"
    assert r.value({"error": {"message": [KEY]}}) == {"error": {"message": [REDACTED]}}


def test_an_error_inside_a_stream_is_redacted_too(fake, tmp_path) -> None:
    client = _client(fake, "openai", tmp_path)
    first = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
             "choices": [{"index": 0, "delta": {"role": "assistant", "content": "hel"}, "finish_reason": None}]}
    fake.queue(Reply(events=[first, {"error": {"message": f"key {KEY} revoked mid-stream", "type": "x"}}]))
    stream = client.chat(model="gpt-4o-mini", messages=HI, stream=True)
    with pytest.raises(errors.ProviderError) as info:
        list(stream)
    _assert_clean(_every_view(info.value))


def test_a_request_built_directly_keeps_the_extra_contract() -> None:
    from pydantic import ValidationError

    from unillm.types import ChatRequest
    with pytest.raises(ValidationError, match="extra.base_url"):
        ChatRequest(model="m", messages=HI, extra={"base_url": "http://127.0.0.1:9"})
