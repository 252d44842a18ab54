"""Pure pieces of the gateway: error mapping, the sliding window, money text, chart marks."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

pytest.importorskip("starlette")

from unillm import errors
from unillm.server import svg
from unillm.server.analytics import fill_series
from unillm.server.chat import to_call
from unillm.server.ratelimit import Limited, RateLimiter
from unillm.server.wire import HTTPError, Scrubber, from_exception


@pytest.mark.parametrize(("exc", "status", "code"), [
    (errors.UnknownModelError("x"), 404, "model_not_found"),
    (errors.UnsupportedParamError("cohere", "seed"), 400, "unsupported_parameter"),
    (errors.RuleDeniedError("no-gpt4", "too pricey"), 403, "rule_denied"),
    (errors.RateLimitError("slow", retry_after=3), 429, "upstream_rate_limited"),
    (errors.ContextWindowExceededError("long"), 400, "context_length_exceeded"),
    (errors.TimeoutError("late"), 504, "upstream_timeout"),
    (errors.ServerError("boom"), 502, "upstream_error"),
    (errors.AuthenticationError("bad key"), 502, "upstream_error"),
    (errors.ConnectionError("refused"), 502, "upstream_error"),
    (errors.LedgerError("disk full"), 503, "ledger_unavailable"),
    (RuntimeError("secret internals"), 500, "internal_error"),
])
def test_error_mapping(exc, status, code):
    err = from_exception(exc)
    assert (err.status, err.code) == (status, code)
    assert "secret internals" not in err.message


def test_budget_error_retry_after_counts_to_reset():
    now = datetime(2025, 1, 31, 23, 0, tzinfo=timezone.utc)
    exc = errors.BudgetExceededError("b", resets_at=(now + timedelta(hours=1)).isoformat())
    err = from_exception(exc, now)
    assert err.status == 429 and err.retry_after == 3600 and err.type == "insufficient_quota"
    assert from_exception(errors.BudgetExceededError("total", resets_at=None), now).retry_after is None


def test_scrubber_removes_every_configured_secret():
    scrub = Scrubber(["sk-abc123456", None, "ab"])
    assert scrub("Incorrect API key provided: sk-abc123456.") == "Incorrect API key provided: ***."
    assert scrub("ab stays: too short to be a key") == "ab stays: too short to be a key"


def test_sliding_window_rpm_and_tpm():
    t = [0.0]
    rl = RateLimiter(clock=lambda: t[0])
    rl.admit("k", 2, None)
    t[0] = 30
    rl.admit("k", 2, None)
    with pytest.raises(Limited) as info:
        rl.admit("k", 2, None)
    assert info.value.retry_after == pytest.approx(30)
    t[0] = 60.01
    rl.admit("k", 2, None)  # the first request left the window
    rl.admit("j", None, 100)
    rl.add_tokens("j", 70)
    t[0] = 70
    rl.add_tokens("j", 40)
    with pytest.raises(Limited) as info:
        rl.admit("j", None, 100)
    assert info.value.retry_after == pytest.approx(60.01 + 60 - 70, abs=0.02)
    assert rl.usage("j") == (1, 110)


def test_to_call_maps_openai_params():
    model, msgs, params, stream, usage, tags = to_call({
        "model": "m", "messages": [{"role": "assistant", "content": "x", "refusal": None, "annotations": []}],
        "max_completion_tokens": 9, "stream": True, "stream_options": {"include_usage": True},
        "metadata": {"team": "a"}, "store": False, "n": 1, "logprobs": False})
    assert (model, params, stream, usage, tags) == ("m", {"max_tokens": 9}, True, True, {"team": "a"})
    assert msgs == [{"role": "assistant", "content": "x"}]
    with pytest.raises(HTTPError) as info:
        to_call({"model": "m", "messages": [], "logit_bias": {"1": 2}})
    assert info.value.param == "logit_bias" and info.value.status == 400


@pytest.mark.parametrize(("value", "text"), [
    ("0", "$0.00"), ("12.5", "$12.50"), ("1234567.891", "$1,234,567.891"),
    ("0.000000123456789012345678", "$0.000000123456789012345678"), ("-0.25", "-$0.25"),
])
def test_money_text_is_exact(value, text):
    assert svg.usd(Decimal(value)) == text


def test_charts_carry_their_data():
    chart = svg.time_chart([("2025-01-01", Decimal("0.5")), ("2025-01-02", Decimal(0))])
    assert chart.count("class='bar'") == 2 and "data-value='0.5'" in chart and "$0.50" in chart
    bars = svg.bar_list([(f"m{i}", Decimal(i), "") for i in range(10, 0, -1)], limit=4)
    assert bars.count("class='bar'") == 4 and "3 others" not in bars and "7 others" in bars
    assert "$28.00" in bars  # 7+6+...+1, summed exactly
    assert "No calls" in svg.time_chart([])


def test_fill_series_gives_every_day():
    since = datetime(2025, 1, 1, 12, tzinfo=timezone.utc)
    out = fill_series([{"t": "2025-01-03", "calls": 1, "tokens": 5, "cost_usd": Decimal(1), "errors": 0}],
                      "day", since, since + timedelta(days=4))
    assert [p["t"] for p in out] == ["2025-01-01", "2025-01-02", "2025-01-03", "2025-01-04", "2025-01-05"]
    assert out[2]["cost_usd"] == 1 and out[0]["cost_usd"] == 0


def test_rule_savings_exclude_what_the_cache_saved_on_routed_calls(tmp_path) -> None:
    """A cache hit on a routed call records the cache's saving; it is not the rule's."""
    from decimal import Decimal

    from unillm import Client
    from unillm.server.analytics import build
    from unillm.testing import FakeProvider, Reply

    rule = {"name": "to mini", "when": {"model": "gpt-4o"}, "use": "gpt-4o-mini"}
    with FakeProvider(Reply(usage={"input_tokens": 1000, "output_tokens": 500})) as fake:
        client = Client(providers=fake.providers(), ledger=f"sqlite:///{tmp_path}/l.db", cache="memory",
                        rules=[rule])
        first = client.chat(model="gpt-4o", messages=[{"role": "user", "content": "x"}], temperature=0)
        client.chat(model="gpt-4o", messages=[{"role": "user", "content": "x"}], temperature=0)  # a hit
    data = build(client)
    (row,) = data["rules"]["by_rule"]
    rule_saving = client.pricebook.price("openai", "gpt-4o").cost(first.usage).total_usd - first.cost.total_usd
    assert row["calls"] == 2 and row["saved_usd"] == rule_saving == data["rules"]["saved_usd"]
    assert data["cache"]["saved_usd"] == first.cost.total_usd
    assert Decimal(0) < rule_saving
