"""What a record keeps and the text a row stores, exactly as before they were made cheaper
(CallRecord's own __init__, amounts checked from their text, timestamps through isoformat)."""

from __future__ import annotations

import dataclasses
import inspect
import random
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from unillm.ledger import CallRecord
from unillm.ledger.rows import from_row, iso, to_row


def _places_at_most_18(value: Decimal) -> bool:  # the rule, as Decimal states it
    exp = value.as_tuple().exponent
    return isinstance(exp, int) and exp >= -18


def test_a_record_is_still_a_frozen_dataclass_with_its_signature():
    rec = CallRecord("openai", "gpt-4o", "error", input_tokens=3)
    assert (rec.provider, rec.model, rec.status, rec.input_tokens) == ("openai", "gpt-4o", "error", 3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        rec.model = "other"  # type: ignore[misc]
    params = inspect.signature(CallRecord).parameters
    assert list(params) == [f.name for f in dataclasses.fields(CallRecord)]
    assert repr(params["tags"].default) == "<factory>"
    with pytest.raises(TypeError):
        CallRecord(provider="openai")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="status must be one of"):
        CallRecord(provider="openai", model="m", status="nope")  # type: ignore[arg-type]


def test_every_record_gets_its_own_defaults():
    a, b = CallRecord(provider="p", model="m"), CallRecord(provider="p", model="m")
    assert a.id != b.id
    assert a.tags == {} and a.tags is not b.tags and a.units is not b.units
    assert a.replace(model="n").id == a.id


@pytest.mark.parametrize("amount", ["1.25E-20", "1.5E-17", "1E-18", "1E-19", "0E-19", "12E-20", "1E+2",
                                    "1.0000000000000000000", "0.000000000000000001", "-3.5E-19"])
def test_an_amount_past_18_places_is_rounded_once_as_before(amount):
    value = Decimal(amount)
    rec = CallRecord(provider="p", model="m", total_usd=value)
    if _places_at_most_18(value):
        assert str(rec.total_usd) == str(value)  # kept exactly, representation and all
    else:
        assert rec.total_usd == value.quantize(Decimal("1e-18"))
        assert rec.total_usd.as_tuple().exponent == -18


def test_amounts_in_any_notation_are_judged_by_their_exponent():
    rng = random.Random(7)
    for _ in range(3000):
        value = Decimal(rng.randint(-10**rng.randint(0, 25), 10**rng.randint(0, 25))).scaleb(rng.randint(-30, 10))
        rec = CallRecord(provider="p", model="m", other_usd=value)
        assert (str(rec.other_usd) == str(value)) == _places_at_most_18(value), value


@pytest.mark.parametrize("when", [
    datetime(2025, 1, 31, 14, 5, 9),                                    # naive: UTC, no microseconds
    datetime(2025, 1, 31, 14, 5, 9, 120, tzinfo=timezone.utc),
    datetime(2025, 1, 31, 1, 0, 0, tzinfo=timezone(timedelta(hours=5))),  # the day before, in UTC
    datetime(2025, 1, 31, 23, 30, 0, 999999, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
])
def test_timestamps_are_fixed_width_utc_text(when):
    utc = when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)
    assert iso(when) == utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert len(iso(when) or "") == 27


def test_a_row_round_trips_through_the_codec():
    rec = CallRecord(provider="p", model="m", started_at=datetime(2025, 1, 31, tzinfo=timezone.utc),
                     tags={"b": "2", "a": "1"}, total_usd=Decimal("0.0000018"))
    back = from_row((1, *to_row(rec)))
    assert back == rec
    assert '{"a":"1","b":"2"}' in to_row(rec)  # tags: sorted keys, no spaces
