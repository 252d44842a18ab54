"""`track(..., at=)` prices at the rate then in force; ``units=`` in `ledger.record` and `track`
prices the book's per_call / per_minute / per_image / per_1k_chars exactly into other_usd;
a Cohere v2 body names its model when it carries one, and says to pass model= when not."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

import unillm
from tests.conftest import ref
from unillm import Client, errors
from unillm.ledger.facade import MAX_UNITS

PRICES = (Path(__file__).parent / "data" / "unit_prices.toml").read_text()


@pytest.fixture
def client(tmp_path: Path) -> Client:
    (tmp_path / "prices.toml").write_text(PRICES)
    return Client(ledger=f"sqlite:///{tmp_path / 'ledger.db'}", pricing=str(tmp_path / "prices.toml"))


def openai_body(model: str) -> dict:
    return ref("openai_chat_completion_captured") | {"model": model}


# ── at= ──────────────────────────────────────────────────────────────────────

def test_a_response_tracked_later_is_priced_at_the_rate_in_force_when_it_ran(client):
    body = openai_body("gpt-4o")
    then = unillm.track(body, at="2024-09-01T10:00:00Z", client=client)
    now = unillm.track(body, client=client)
    u = (then.input_tokens, then.output_tokens)
    assert then.total_usd == (u[0] * Decimal("5.00") + u[1] * Decimal("15.00")) / 10**6  # before 2024-10-02
    assert now.total_usd == (u[0] * Decimal("2.50") + u[1] * Decimal("10.00")) / 10**6
    assert then.started_at.isoformat().startswith("2024-09-01T10:00")


def test_a_bad_at_names_the_field(client):
    with pytest.raises(errors.InvalidRequestError) as info:
        unillm.track(openai_body("gpt-4o"), at=12345, client=client)
    assert info.value.param == "at"


# ── units= ───────────────────────────────────────────────────────────────────

@pytest.mark.parametrize(("model", "units", "usd"), [
    ("whisper-1", {"minutes": Decimal("2.5")}, "0.015"),
    ("whisper-1", {"minutes": 1.1}, "0.0066"),          # a float through its shortest repr: exact
    ("dall-e-3", {"images": 3}, "0.12"),
    ("tts-1", {"chars": 1234}, "18.51"),
    ("tts-1", {"chars": "7"}, "0.105"),
])
def test_ledger_record_prices_units_exactly_into_other_usd(client, model, units, usd):
    rec = client.ledger.record(provider="openai", model=model, input_tokens=0, output_tokens=0,
                               units=units)
    assert rec.other_usd == Decimal(usd) == rec.total_usd
    (back,) = client.ledger.records()
    assert back.units == {k: Decimal(str(v)) for k, v in units.items()} and back.total_usd == Decimal(usd)
    (row,) = client.ledger.summary()
    assert row["cost_usd"] == Decimal(usd)


def test_track_takes_units_and_a_per_call_fee_is_billed_once(client):
    body = openai_body("sonar")
    rec = unillm.track(body, provider="perplexity", client=client)
    tokens = rec.input_tokens * Decimal("1.00") / 10**6 + rec.output_tokens * Decimal("1.00") / 10**6
    assert rec.other_usd == Decimal("0.005") and rec.total_usd == tokens + Decimal("0.005")
    two = unillm.track(body, provider="perplexity", units={"calls": 2}, client=client)
    assert two.other_usd == Decimal("0.010") and two.units == {"calls": Decimal(2)}


@pytest.mark.parametrize(("model", "units", "param"), [
    ("whisper-1", {"seconds": 3}, "units.seconds"),
    ("whisper-1", {"minutes": -1}, "units.minutes"),
    ("whisper-1", {"minutes": float("nan")}, "units.minutes"),
    ("whisper-1", {"minutes": MAX_UNITS + 1}, "units.minutes"),
    ("whisper-1", {"minutes": True}, "units.minutes"),
    ("whisper-1", {"minutes": "lots"}, "units.minutes"),
    ("gpt-4o", {"images": 2}, "units.images"),   # no per_image price: never a silent $0
    ("whisper-1", ["minutes"], "units"),
])
def test_bad_units_name_the_field_and_record_nothing(client, model, units, param):
    with pytest.raises(errors.InvalidRequestError) as info:
        client.ledger.record(provider="openai", model=model, input_tokens=0, output_tokens=0, units=units)
    assert info.value.param == param
    assert list(client.ledger.records()) == []


# ── Cohere: the model ────────────────────────────────────────────────────────

def test_a_cohere_body_without_a_model_says_to_pass_model(client):
    with pytest.raises(errors.InvalidRequestError) as info:
        unillm.track(ref("cohere_v2_chat_api_reference"), client=client)
    assert info.value.param == "model" and "pass model=" in str(info.value)
    assert list(client.ledger.records()) == []


def test_a_cohere_body_that_carries_its_model_is_detected(client):
    from cohere.v2 import V2ChatResponse
    body = ref("cohere_v2_chat_api_reference") | {"model": "command-r"}
    as_dict = unillm.track(body, client=client)
    as_sdk = unillm.track(V2ChatResponse.model_validate(body), client=client)
    explicit = unillm.track(body, model="command-r-plus", client=client)  # an explicit model wins
    assert (as_dict.provider, as_dict.model) == ("cohere", "command-r") == (as_sdk.provider, as_sdk.model)
    assert explicit.model == "command-r-plus"
    assert as_dict.total_usd == as_sdk.total_usd > 0
