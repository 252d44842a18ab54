"""The ``extra`` contract (issue 13, finding 1): vendor parameters pass; nothing in ``extra`` may
change what is called, where, with whose credentials, or what a budget holds. And whatever the
vendor answers with, the ledger prices the model the vendor reports."""

from __future__ import annotations

import warnings
from decimal import Decimal

import pytest

from unillm import Client, errors
from unillm.extra import RESERVED
from unillm.testing import FakeProvider, Reply

HI = [{"role": "user", "content": "hi"}]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "google": "gemini-2.5-flash",
          "cohere": "command-r7b"}

# every way the issue reached another place, model or key, per protocol
ESCAPES = [
    ("google", {"http_options": {"base_url": "http://127.0.0.1:9/"}}, "extra.http_options"),
    ("google", {"httpOptions": {"base_url": "http://127.0.0.1:9/"}}, "extra.httpOptions"),
    ("google", {"config": {"http_options": {"headers": {"x-goog-api-key": "other"}}}},
     "extra.config.http_options"),
    ("google", {"max_output_tokens": 100000}, "extra.max_output_tokens"),
    ("google", {"candidate_count": 8}, "extra.candidate_count"),
    ("google", {"automatic_function_calling": {"disable": False}}, "extra.automatic_function_calling"),
    ("google", {"should_return_http_response": False}, "extra.should_return_http_response"),
    ("openai", {"model": "o1"}, "extra.model"),
    ("openai", {"extra_body": {"model": "o1"}}, "extra.extra_body.model"),
    ("openai", {"extra_headers": {"Authorization": "Bearer sk-other"}}, "extra.extra_headers"),
    ("openai", {"extra_query": {"api-version": "x"}}, "extra.extra_query"),
    ("openai", {"extra_headers": {"OpenAI-Organization": "org-x", "OpenAI-Project": "p"}},
     "extra.extra_headers"),
    ("openai", {"timeout": 0.001}, "extra.timeout"),
    ("openai", {"n": 5}, "extra.n"),
    ("openai", {"max_completion_tokens": 100000}, "extra.max_completion_tokens"),
    ("openai", {"stream_options": {"include_usage": False}}, "extra.stream_options"),
    ("openai", {"messages": [{"role": "user", "content": "other"}]}, "extra.messages"),
    ("anthropic", {"extra_headers": {"x-api-key": "sk-ant-other"}}, "extra.extra_headers"),
    ("anthropic", {"workspace_id": "wrkspc_other"}, "extra.workspace_id"),
    ("anthropic", {"max_tokens": 64000}, "extra.max_tokens"),
    ("anthropic", {"extra_body": {"model": "claude-opus-4-1"}}, "extra.extra_body.model"),
    ("anthropic", {"stream": True}, "extra.stream"),
    ("cohere", {"request_options": {"additional_headers": {"Authorization": "Bearer other"}}},
     "extra.request_options"),
    ("cohere", {"model": "command-a-03-2025"}, "extra.model"),
    ("cohere", {"max_tokens": 100000}, "extra.max_tokens"),
]


@pytest.fixture
def client(fake: FakeProvider, tmp_path) -> Client:
    return Client(providers=fake.providers(), ledger=f"sqlite:///{tmp_path}/l.db", sleep=lambda s: None)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider,extra,param", ESCAPES)
def test_reserved_extra_keys_are_refused_before_anything_is_sent(client, fake, provider, extra, param,
                                                                 stream) -> None:
    with pytest.raises(errors.InvalidRequestError) as info:
        client.chat(model=f"{provider}/{MODELS[provider]}", messages=HI, extra=extra, stream=stream)
    assert info.value.param == param and param in str(info.value)
    assert fake.requests == []


async def test_async_calls_keep_the_same_contract(client, fake) -> None:
    with pytest.raises(errors.InvalidRequestError, match="extra.http_options"):
        await client.achat(model="gemini-2.5-flash", messages=HI, extra={"http_options": {}})
    assert fake.requests == []


@pytest.mark.parametrize("provider,extra,where", [
    ("openai", {"logprobs": True, "safe_prompt": True, "extra_body": {"top_k": 3}}, "body"),
    ("anthropic", {"thinking": {"type": "adaptive"}, "service_tier": "auto"}, "body"),
    ("google", {"safety_settings": [{"category": "HARM_CATEGORY_HATE_SPEECH", "threshold": "BLOCK_NONE"}]},
     "generationConfig"),
    ("cohere", {"safety_mode": "STRICT", "new_field": 1}, "body"),
])
def test_everything_else_passes(client, fake, provider, extra, where) -> None:
    client.chat(model=f"{provider}/{MODELS[provider]}", messages=HI, extra=extra)
    sent = fake.requests[-1].json
    if provider == "openai":
        assert sent["logprobs"] is True and sent["safe_prompt"] is True and sent["top_k"] == 3
    elif provider == "anthropic":
        assert sent["thinking"] == {"type": "adaptive"} and sent["service_tier"] == "auto"
    elif provider == "google":
        assert sent["safetySettings"][0]["threshold"] == "BLOCK_NONE"
    else:
        assert sent["safety_mode"] == "STRICT" and sent["new_field"] == 1


def test_the_table_names_every_key_the_issue_used() -> None:
    for key in ("model", "messages", "stream", "http_options", "extra_headers", "extra_query",
                "timeout", "api_key", "base_url", "request_options"):
        assert key in RESERVED


# ── the model the vendor reports is the model priced ─────────────────────────

def _row(client: Client):
    rows = list(client.ledger.records())
    assert len(rows) == 1
    return rows[0]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("provider,sent,reported", [
    ("openai", "gpt-4o-mini", "o1"),
    ("anthropic", "claude-haiku-4-5", "claude-opus-4-1"),
    ("google", "gemini-2.5-flash", "gemini-2.5-pro"),
])
def test_another_model_reported_is_priced_as_itself_and_flagged(client, fake, provider, sent, reported,
                                                               stream) -> None:
    usage = {"input_tokens": 1000, "output_tokens": 100}
    fake.queue(Reply(text="answered by another", model=reported, usage=usage))
    with pytest.warns(errors.ModelMismatchWarning, match=reported):
        r = client.chat(model=f"{provider}/{sent}", messages=HI, stream=stream)
        if stream:
            list(r)
            r = r.response
    expected = client.pricebook.cost(provider, reported, r.usage).total_usd
    assert expected > client.pricebook.cost(provider, sent, r.usage).total_usd  # the dearer model
    assert r.model == reported and r.model_mismatch and r.sent_model == sent
    assert r.cost.total_usd == expected
    row = _row(client)
    assert (row.model, row.sent_model, row.total_usd) == (reported, sent, expected)


def test_a_dated_snapshot_of_the_model_sent_is_not_a_mismatch(client, fake) -> None:
    fake.queue(Reply(model="gpt-4o-mini-2024-07-18", usage={"input_tokens": 1000, "output_tokens": 100}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", errors.ModelMismatchWarning)
        r = client.chat(model="gpt-4o-mini", messages=HI)
    assert not r.model_mismatch and r.sent_model == "gpt-4o-mini"
    assert r.cost.total_usd == client.pricebook.cost("openai", "gpt-4o-mini", r.usage).total_usd
    row = _row(client)
    assert (row.model, row.sent_model) == ("gpt-4o-mini-2024-07-18", "gpt-4o-mini")


def test_a_snapshot_with_its_own_price_is_priced_by_it_and_not_flagged(client, fake) -> None:
    usage = {"input_tokens": 1000, "output_tokens": 100}
    fake.queue(Reply(model="gpt-4o-2024-08-06", usage=usage), Reply(model="gpt-4o-2024-05-13", usage=usage))
    with warnings.catch_warnings():
        warnings.simplefilter("error", errors.ModelMismatchWarning)
        same = client.chat(model="gpt-4o", messages=HI)
        dearer = client.chat(model="gpt-4o", messages=HI)
    assert not same.model_mismatch and not dearer.model_mismatch
    assert same.cost.total_usd == Decimal("0.0035")     # 1000 x $2.50/M + 100 x $10/M
    assert dearer.cost.total_usd == Decimal("0.0065")   # the 2024-05-13 snapshot: $5 / $15


def test_an_unpriced_reported_model_is_flagged_and_priced_as_sent(client, fake) -> None:
    fake.queue(Reply(model="gpt-unknown-9", usage={"input_tokens": 1000, "output_tokens": 100}))
    with pytest.warns(errors.ModelMismatchWarning, match="no price"):
        r = client.chat(model="gpt-4o-mini", messages=HI)
    assert r.model_mismatch and r.cost.total_usd == Decimal("0.00021")
    assert _row(client).model == "gpt-unknown-9"


def test_an_unknown_anthropic_key_rides_in_the_body_not_a_type_error(client, fake) -> None:
    client.chat(model="claude-haiku-4-5", messages=HI, extra={"new_field": 1, "extra_body": {"other": 2}})
    assert fake.requests[-1].json["new_field"] == 1 and fake.requests[-1].json["other"] == 2


def test_anthropic_sdk_kwargs_are_what_the_installed_sdk_takes() -> None:
    import inspect

    import anthropic

    from unillm.adapters.anthropic.convert import SDK_KWARGS
    assert SDK_KWARGS <= set(inspect.signature(anthropic.resources.Messages.create).parameters)
