"""The cloud variants through their vendors' official SDKs, offline against FakeProvider:
Azure OpenAI (``openai.AzureOpenAI``), Anthropic on Bedrock (``anthropic.AnthropicBedrock``,
SigV4 by botocore), Anthropic on Vertex (``anthropic.AnthropicVertex``) and Gemini on Vertex
(``google.genai.Client(vertexai=True)``): a plain, a streamed and a tool call each, sync and
async, priced by the cloud's own entries and recorded in the ledger."""

from __future__ import annotations

import json
from decimal import Decimal as D
from pathlib import Path

import pytest

from unillm import Client, errors
from unillm.testing import FakeProvider, Reply, ToolCallSpec

HI = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
USAGE = {"input_tokens": 1000, "cache_read_tokens": 0, "cache_write_tokens": 0, "output_tokens": 200,
         "reasoning_tokens": 0}
CALL = ToolCallSpec("get_weather", {"city": "Paris"}, id="call_1")

# model, the path FakeProvider saw, and the exact cost of USAGE at the cloud's list price
CASES = {
    "azure": ("azure/gpt-4o", "/openai/deployments/gpt-4o/chat/completions",
              D("0.0045")),                                       # 1000 x 2.50 + 200 x 10.00 per 1M
    "bedrock": ("bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0",
                "/model/anthropic.claude-sonnet-4-5-20250929-v1:0/invoke", D("0.0066")),  # 3.30 / 16.50
    "vertex-anthropic": ("vertex-anthropic/claude-sonnet-4-5@20250929",
                         "/v1/projects/fake-project/locations/global/publishers/anthropic/models/"
                         "claude-sonnet-4-5@20250929:rawPredict", D("0.0060")),            # 3.00 / 15.00
    "vertex-gemini": ("vertex-gemini/gemini-2.5-flash",
                      "/v1beta1/projects/fake-project/locations/global/publishers/google/models/"
                      "gemini-2.5-flash:generateContent", D("0.0008")),                   # 0.30 / 2.50
}
STREAM_PATH = {"azure": "/chat/completions", "bedrock": "/invoke-with-response-stream",
               "vertex-anthropic": ":streamRawPredict", "vertex-gemini": ":streamGenerateContent"}


@pytest.fixture
def client(fake: FakeProvider, tmp_path: Path):
    c = Client(providers=fake.providers(*CASES), ledger=f"sqlite:///{tmp_path}/ledger.db")
    yield c
    c.close()


def _row(client: Client):
    rows = list(client.ledger.records())
    assert rows, "no ledger row"
    return rows[-1]


def _check_priced(client: Client, name: str, resp, stream: bool) -> None:
    model, _, cost = CASES[name]
    assert resp.cost.total_usd == cost and resp.provider == name
    row = _row(client)
    assert (row.provider, row.model, row.status, row.stream) == (name, model.split("/", 1)[1], "ok", stream)
    assert row.total_usd == cost and (row.input_tokens, row.output_tokens) == (1000, 200)


@pytest.mark.parametrize("name", list(CASES))
def test_plain_call_through_the_official_sdk_is_priced_and_recorded(client, fake, name) -> None:
    fake.queue(Reply(text="bonjour", usage=USAGE))
    model, path, _ = CASES[name]
    resp = client.chat(model=model, messages=HI)
    assert resp.choices[0].message.content == "bonjour"
    assert fake.requests[-1].protocol == name and fake.requests[-1].path == path
    _check_priced(client, name, resp, stream=False)


@pytest.mark.parametrize("name", list(CASES))
def test_streamed_call_is_priced_and_recorded(client, fake, name) -> None:
    fake.queue(Reply(text="a streamed answer", usage=USAGE))
    stream = client.chat(model=CASES[name][0], messages=HI, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "a streamed answer"
    assert fake.requests[-1].stream and fake.requests[-1].path.endswith(STREAM_PATH[name])
    _check_priced(client, name, stream.response, stream=True)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("name", list(CASES))
def test_tool_call_comes_back_as_a_tool_call(client, fake, name, stream) -> None:
    fake.queue(Reply(text="", tool_calls=[CALL], usage=USAGE))
    resp = client.chat(model=CASES[name][0], messages=HI, tools=TOOLS, stream=stream)
    if stream:
        for _ in resp:
            pass
        resp = resp.response
    call = resp.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}
    assert resp.choices[0].finish_reason == "tool_calls"
    sent = fake.requests[-1].json
    assert "get_weather" in json.dumps(sent)  # the tool went out in the vendor's own shape
    _check_priced(client, name, resp, stream=stream)


@pytest.mark.parametrize("name", list(CASES))
async def test_async_plain_and_stream(client, fake, name) -> None:
    fake.queue(Reply(text="async", usage=USAGE), Reply(text="async stream", usage=USAGE))
    resp = await client.achat(model=CASES[name][0], messages=HI)
    assert resp.choices[0].message.content == "async"
    _check_priced(client, name, resp, stream=False)
    stream = await client.achat(model=CASES[name][0], messages=HI, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "async stream"
    _check_priced(client, name, stream.response, stream=True)
    await client.aclose()


# ── what each cloud's wire looks like ────────────────────────────────────────

def test_azure_sends_api_version_and_api_key_and_uses_the_deployment(fake) -> None:
    c = Client(providers={"azure": {**fake.client_settings("azure"), "deployment": "prod-4o"}}, ledger="off")
    resp = c.chat(model="azure/gpt-4o", messages=HI)
    sent = fake.requests[-1]
    assert sent.path == "/openai/deployments/prod-4o/chat/completions"
    assert sent.query["api-version"] == ["2024-10-21"]
    assert sent.headers["api-key"] == fake.api_key and "authorization" not in sent.headers
    assert sent.json["model"] == "gpt-4o" and resp.cost.total_usd > 0  # priced as the model, not the deployment


def test_azure_entra_token_provider_sends_a_bearer_token_not_a_key(fake) -> None:
    settings = {k: v for k, v in fake.client_settings("azure").items() if k != "api_key"}
    c = Client(providers={"azure": {**settings, "token_provider": lambda: "entra-token-0123456789"}}, ledger="off")
    c.chat(model="azure/gpt-4o", messages=HI)
    headers = fake.requests[-1].headers
    assert headers["authorization"] == "Bearer entra-token-0123456789" and "api-key" not in headers


SIGV4 = {"aws_access_key_id": "AKIAFAKEFAKEFAKEFAKE", "aws_secret_access_key": "fake-aws-secret-0123456789",
         "aws_session_token": "fake-session-token-0123456789"}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_bedrock_signs_with_sigv4_and_never_sends_the_secret(fake, tmp_path, stream) -> None:
    settings = {**{k: v for k, v in fake.client_settings("bedrock").items() if k != "api_key"}, **SIGV4}
    c = Client(providers={"bedrock": settings}, ledger=f"sqlite:///{tmp_path}/l.db", log_content=True)
    fake.queue(Reply(text="signed", usage=USAGE))
    resp = c.chat(model="bedrock/anthropic.claude-sonnet-4-5-20250929-v1:0", messages=HI, stream=stream)
    if stream:
        assert "".join(ch.choices[0].delta.content or "" for ch in resp if ch.choices) == "signed"
        resp = resp.response
    assert resp.cost.total_usd == D("0.0066")
    sent = fake.requests[-1]
    auth = sent.headers["authorization"]
    assert auth.startswith("AWS4-HMAC-SHA256 Credential=AKIAFAKEFAKEFAKEFAKE/")
    assert "/us-east-1/bedrock/aws4_request" in auth and "x-amz-date" in sent.headers
    assert sent.headers["x-amz-security-token"] == SIGV4["aws_session_token"]
    assert SIGV4["aws_secret_access_key"] not in json.dumps(sent.headers)
    assert "model" not in sent.json and sent.json["anthropic_version"]  # the path names the model
    c.close()
    for f in tmp_path.glob("l.db*"):
        for secret in (SIGV4["aws_secret_access_key"], SIGV4["aws_session_token"]):
            assert secret.encode() not in f.read_bytes()


def test_bedrock_api_key_is_a_bearer_token_with_no_signature(fake) -> None:
    c = Client(providers={"bedrock": {"base_url": fake.url, "region": "eu-west-3", "api_key": "bedrock-key-0123456789"}},
               ledger="off")
    c.chat(model="bedrock/eu.anthropic.claude-sonnet-4-5-20250929-v1:0", messages=HI)
    assert fake.requests[-1].headers["authorization"] == "Bearer bedrock-key-0123456789"


def test_bedrock_stream_is_aws_event_stream_frames_decoded_by_botocore(client, fake) -> None:
    fake.queue(Reply(text="framed", usage=USAGE))
    stream = client.chat(model=CASES["bedrock"][0], messages=HI, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "framed"
    from unillm.testing.protocols.bedrock import message
    frame = message({":event-type": "chunk"}, b'{"bytes": ""}')
    from botocore.eventstream import EventStreamBuffer  # the decoder the SDK uses
    buf = EventStreamBuffer()
    buf.add_data(frame)
    decoded = next(iter(buf))
    assert decoded.headers[":event-type"] == "chunk" and decoded.payload == b'{"bytes": ""}'


def test_vertex_sends_the_access_token_and_names_project_and_location(fake) -> None:
    for name in ("vertex-anthropic", "vertex-gemini"):
        settings = {**fake.client_settings(name), "project": "acme-prod-42", "location": "europe-west1"}
        c = Client(providers={name: settings}, ledger="off", on_missing_price="record")
        c.chat(model=f"{name}/{CASES[name][0].split('/', 1)[1]}", messages=HI)
        sent = fake.requests[-1]
        assert "/projects/acme-prod-42/locations/europe-west1/publishers/" in sent.path
        assert sent.headers["authorization"] == f"Bearer {settings['access_token']}"
        c.close()


@pytest.mark.parametrize("name", ["vertex-anthropic", "vertex-gemini"])
def test_vertex_takes_a_google_auth_credentials_object(fake, name) -> None:
    from google.oauth2.credentials import Credentials
    settings = {k: v for k, v in fake.client_settings(name).items() if k != "access_token"}
    creds = Credentials(token="ya29.from-a-credentials-object")  # a token: no refresh, no network
    c = Client(providers={name: {**settings, "credentials": creds}}, ledger="off")
    c.chat(model=CASES[name][0], messages=HI)
    assert fake.requests[-1].headers["authorization"] == "Bearer ya29.from-a-credentials-object"


@pytest.mark.parametrize("name", ["vertex-anthropic", "vertex-gemini"])
def test_vertex_without_usable_google_credentials_is_an_authentication_error(fake, tmp_path, monkeypatch,
                                                                             name) -> None:
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "no-such-key.json"))  # no network
    settings = {k: v for k, v in fake.client_settings(name).items() if k != "access_token"}
    c = Client(providers={name: settings}, ledger="off")
    with pytest.raises(errors.AuthenticationError, match="Google credentials"):
        c.chat(model=CASES[name][0], messages=HI)
    assert fake.requests == []


def test_bedrock_aws_keys_beside_a_bedrock_api_key_in_the_env_is_a_config_error(fake, monkeypatch) -> None:
    monkeypatch.setenv("AWS_BEARER_TOKEN_BEDROCK", "bedrock-env-key-0123456789")
    c = Client(providers={"bedrock": {"base_url": fake.url, "region": "us-east-1", **SIGV4}}, ledger="off")
    with pytest.raises(errors.ConfigError, match="providers.bedrock.api_key") as info:
        c.chat(model=CASES["bedrock"][0], messages=HI)
    assert "bedrock-env-key-0123456789" not in str(info.value) and fake.requests == []


# ── prices key by the provider name used ─────────────────────────────────────

def test_a_named_cloud_provider_is_priced_by_its_clouds_entries_unless_it_has_its_own(fake, tmp_path) -> None:
    azure = {"adapter": "azure", **fake.client_settings("azure")}
    c = Client(providers={"azure-eastus": azure}, ledger="off")
    fake.queue(Reply(usage=USAGE))
    assert c.chat(model="azure-eastus/gpt-4o", messages=HI).cost.total_usd == D("0.0045")
    prices = tmp_path / "prices.toml"
    prices.write_text('[azure-eastus."gpt-4o"]\ninput = 2.75\noutput = 11.00\n')   # a Data Zone price
    c = Client(providers={"azure-eastus": azure}, ledger="off", pricing=str(prices))
    fake.queue(Reply(usage=USAGE))
    assert c.chat(model="azure-eastus/gpt-4o", messages=HI).cost.total_usd == D("0.00495")


def test_bedrock_global_profile_and_vertex_global_endpoint_bill_anthropics_price(client, fake) -> None:
    fake.queue(Reply(usage=USAGE), Reply(usage=USAGE))
    model = "bedrock/global.anthropic.claude-sonnet-4-5-20250929-v1:0"
    assert client.chat(model=model, messages=HI).cost.total_usd == D("0.0060")
    regional = Client(providers={"vertex-anthropic": {**fake.client_settings("vertex-anthropic"),
                                                      "location": "us-east5"}}, ledger="off")
    resp = regional.chat(model="vertex-anthropic/claude-sonnet-4-5@20250929", messages=HI)
    assert resp.cost.total_usd == D("0.0066")   # regional endpoint: +10%


def test_unpriced_cloud_model_is_a_missing_price_naming_the_cloud(fake) -> None:
    c = Client(providers=fake.providers("bedrock"), ledger="off")
    with pytest.raises(errors.MissingPriceError) as info:
        c.chat(model="bedrock/anthropic.claude-unknown-v1:0", messages=HI)
    assert "bedrock" in str(info.value)


# ── errors ───────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("name", list(CASES))
def test_cloud_429_is_a_rate_limit_error_and_secrets_never_show(fake, name) -> None:
    settings = fake.client_settings(name)
    secret = settings.get("access_token") or settings["api_key"]
    c = Client(providers={name: settings}, ledger="off", retry={"initial": 0, "jitter": 0})
    fake.default = Reply(status=429, error=f"slow down, {secret}", headers={"retry-after": "0"})
    with pytest.raises(errors.RateLimitError) as info:
        c.chat(model=CASES[name][0], messages=HI)
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert info.value.provider == name


def test_settings_reprs_and_dumps_hide_cloud_credentials(fake) -> None:
    from unillm.profiles import build_settings
    tables = {name: fake.client_settings(name) for name in CASES}
    tables["bedrock-sigv4"] = {"adapter": "bedrock", "region": "us-east-1", **SIGV4}
    for name, table in tables.items():
        s = build_settings({name: table})[name]
        shown = repr(s) + json.dumps(s.model_dump(mode="json"))
        for secret in s.secrets():
            assert secret not in shown
        assert s.secrets(), name


def test_an_echoed_aws_secret_is_redacted_from_the_error(fake) -> None:
    settings = {"base_url": fake.url, "region": "us-east-1", **SIGV4}
    c = Client(providers={"bedrock": settings}, ledger="off")
    fake.default = Reply(status=403, error=f"signature mismatch for {SIGV4['aws_secret_access_key']}")
    with pytest.raises(errors.PermissionDeniedError) as info:
        c.chat(model=CASES["bedrock"][0], messages=HI)
    assert SIGV4["aws_secret_access_key"] not in str(info.value) + repr(info.value) + repr(info.value.body)


def test_no_credentials_or_endpoint_fails_at_first_call_with_the_setting_to_give(fake, monkeypatch) -> None:
    for var in ("AZURE_OPENAI_ENDPOINT", "GOOGLE_CLOUD_PROJECT", "AZURE_OPENAI_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    c = Client(providers={"azure": {"api_key": "k" * 20}}, ledger="off")
    with pytest.raises(errors.ConfigError, match=r"providers\.azure\.base_url.*AZURE_OPENAI_ENDPOINT"):
        c.chat(model="azure/gpt-4o", messages=HI)
    c = Client(providers={"azure": {"base_url": fake.url}}, ledger="off")
    with pytest.raises(errors.AuthenticationError, match="AZURE_OPENAI_API_KEY"):
        c.chat(model="azure/gpt-4o", messages=HI)
    c = Client(providers={"vertex-gemini": {"base_url": fake.url, "access_token": "t" * 20}}, ledger="off")
    with pytest.raises(errors.ConfigError, match=r"providers\.vertex-gemini\.project.*GOOGLE_CLOUD_PROJECT"):
        c.chat(model="vertex-gemini/gemini-2.5-flash", messages=HI)


@pytest.mark.parametrize(("name", "extra", "param"), [
    ("azure", {"extra_query": {"api-version": "2023-01-01"}}, "extra.extra_query"),
    ("azure", {"extra_headers": {"api-key": "someone-elses"}}, "extra.extra_headers"),
    ("azure", {"deployment": "other"}, "extra.deployment"),
    ("bedrock", {"extra_body": {"model": "anthropic.claude-opus-4-1"}}, "extra.extra_body.model"),
    ("bedrock", {"region": "eu-west-3"}, "extra.region"),
    ("bedrock", {"anthropic_version": "bedrock-2023-05-31"}, "extra.anthropic_version"),
    ("vertex-anthropic", {"project_id": "someone-else"}, "extra.project_id"),
    ("vertex-gemini", {"http_options": {"base_url": "http://127.0.0.1:9/"}}, "extra.http_options"),
    ("vertex-gemini", {"location": "us-central1"}, "extra.location"),
])
def test_extra_cannot_choose_a_clouds_place_or_credentials(client, fake, name, extra, param) -> None:
    with pytest.raises(errors.InvalidRequestError, match=param.replace(".", r"\.")):
        client.chat(model=CASES[name][0], messages=HI, extra=extra)
    assert fake.requests == []


def test_a_bedrock_stream_that_fails_midway_is_a_rate_limit_error_and_recorded_partial(client, fake) -> None:
    from unillm.testing.protocols.bedrock import BedrockProtocol
    from unillm.testing.replies import Ctx
    reply = Reply(text="half an answer", usage=USAGE)
    events = list(BedrockProtocol().render_stream(reply, Ctx("bedrock", "", {}, "m", True, 1)))[:4]
    fake.queue(Reply(events=[*events, ("exception", {"type": "throttlingException",
                                                     "message": "Too many tokens, please wait."})]))
    stream = client.chat(model=CASES["bedrock"][0], messages=HI, stream=True)
    with pytest.raises(errors.RateLimitError, match="Too many tokens"):
        for _ in stream:
            pass
    row = _row(client)
    assert (row.status, row.error_class, row.input_tokens) == ("partial", "RateLimitError", 1000)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("name", ["bedrock", "vertex-anthropic"])
def test_claude_on_a_cloud_answers_with_anthropics_name_and_is_recorded_as_the_clouds_id(
        client, fake, name, stream) -> None:
    import warnings
    fake.queue(Reply(usage=USAGE))
    with warnings.catch_warnings():
        warnings.simplefilter("error", errors.ModelMismatchWarning)
        resp = client.chat(model=CASES[name][0], messages=HI, stream=stream)
        if stream:
            for _ in resp:
                pass
            resp = resp.response
    assert resp.model == CASES[name][0].split("/", 1)[1] and not resp.model_mismatch
    _check_priced(client, name, resp, stream=stream)


def test_azure_answering_with_the_model_version_is_priced_as_its_model(client, fake) -> None:
    import warnings
    fake.queue(Reply(usage=USAGE, model="gpt-4o-2024-11-20"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", errors.ModelMismatchWarning)
        resp = client.chat(model="azure/gpt-4o", messages=HI)
    assert resp.model == "gpt-4o-2024-11-20" and resp.cost.total_usd == D("0.0045")


def test_azure_api_version_comes_from_the_setting_then_the_env_then_the_default(fake, monkeypatch) -> None:
    table = {"adapter": "azure", "base_url": fake.url, "api_key": "k" * 20}
    Client(providers={"az": table}, ledger="off", on_missing_price="record").chat(model="az/gpt-4o", messages=HI)
    assert fake.requests[-1].query["api-version"] == ["2024-10-21"]
    monkeypatch.setenv("OPENAI_API_VERSION", "2025-04-01-preview")
    Client(providers={"az": table}, ledger="off", on_missing_price="record").chat(model="az/gpt-4o", messages=HI)
    assert fake.requests[-1].query["api-version"] == ["2025-04-01-preview"]
    Client(providers={"az": {**table, "api_version": "2024-06-01"}}, ledger="off",
           on_missing_price="record").chat(model="az/gpt-4o", messages=HI)
    assert fake.requests[-1].query["api-version"] == ["2024-06-01"]
