"""Every HTTP attempt is a ledger row (issue 14, finding 9): retries included, linked by
``call_id``, numbered by ``attempt``, the retried ones marked; the vendor saw exactly as many
requests as the ledger has rows. Real SDKs against FakeProvider (and a raw socket for a body
cut short)."""

from __future__ import annotations

import socket
import threading

import pytest

from unillm import Client, errors
from unillm.testing import Reply

from .servers import pg_url, postgres_server, postgres_url  # noqa: F401

HI = [{"role": "user", "content": "hi"}]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-4-5", "google": "gemini-2.5-flash",
          "cohere": "command-r7b"}
USAGE = {"input_tokens": 100, "output_tokens": 10}


def _client(fake_url: str, provider: str, tmp_path, **extra) -> Client:
    base = fake_url + "/v1" if provider == "openai" else fake_url
    return Client(providers={provider: {"base_url": base, "api_key": "sk-test-key-123456", "timeout": 0.5,
                                        **extra}},
                  ledger=f"sqlite:///{tmp_path}/l.db", sleep=lambda s: None, asleep=_no_sleep)


async def _no_sleep(seconds: float) -> None:
    return None


def _rows(client: Client):
    return sorted(client.ledger.records(), key=lambda r: r.attempt)


async def _chat(client: Client, mode: str, model: str, **kw):
    if mode == "async":
        return await client.achat(model=model, messages=HI, **kw)
    return client.chat(model=model, messages=HI, **kw)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("provider", list(MODELS))
async def test_500_and_429_retried_are_rows(fake, tmp_path, provider, mode) -> None:
    client = _client(fake.url, provider, tmp_path)
    fake.queue(Reply(status=500, error="boom"), Reply(status=429, error="slow", headers={"retry-after": "0"}),
               Reply(text="third time", usage=USAGE))
    r = await _chat(client, mode, f"{provider}/{MODELS[provider]}")
    rows = _rows(client)
    assert len(rows) == len(fake.requests) == 3
    assert [(x.attempt, x.retried, x.status) for x in rows] == [(1, True, "error"), (2, True, "error"),
                                                                 (3, False, "ok")]
    assert [x.error_class for x in rows] == ["ServerError", "RateLimitError", None]
    assert len({x.call_id for x in rows}) == 1 and rows[0].call_id is not None
    assert rows[0].total_usd is None and rows[1].total_usd is None          # no answer, no bill
    assert rows[2].total_usd == r.cost.total_usd and r.ledger_id == rows[2].id
    assert all(x.latency_ms is not None and x.latency_ms >= 0 for x in rows)
    # summary: every attempt by default, the retried ones left out on request; the spend is the same
    every, final = client.ledger.summary(), client.ledger.summary(retries=False)
    assert (every[0]["calls"], every[0]["errors"], final[0]["calls"], final[0]["errors"]) == (3, 2, 1, 0)
    assert every[0]["cost_usd"] == final[0]["cost_usd"] == r.cost.total_usd


@pytest.mark.parametrize("provider", list(MODELS))
def test_a_reset_stream_and_a_timeout_are_unknown_rows(fake, tmp_path, provider) -> None:
    client = _client(fake.url, provider, tmp_path)
    fake.queue(Reply(cut_after=0), Reply(delay=1.2), Reply(text="at last", usage=USAGE))
    stream = client.chat(model=f"{provider}/{MODELS[provider]}", messages=HI, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "at last"
    rows = _rows(client)
    assert len(rows) == len(fake.requests) == 3
    assert [(x.attempt, x.retried, x.status, x.error_class) for x in rows] == [
        (1, True, "unknown", "ConnectionError"), (2, True, "unknown", "TimeoutError"), (3, False, "ok", None)]
    assert rows[0].total_usd is None and rows[1].total_usd is None          # the bill is not known
    assert len({x.call_id for x in rows}) == 1


def test_attempts_that_all_fail_are_all_rows(fake, tmp_path) -> None:
    client = _client(fake.url, "openai", tmp_path)
    fake.queue(*[Reply(status=503, error="down")] * 3)
    with pytest.raises(errors.ServerError):
        client.chat(model="gpt-4o-mini", messages=HI)
    rows = _rows(client)
    assert len(rows) == len(fake.requests) == 3
    assert [(x.retried, x.status) for x in rows] == [(True, "error"), (True, "error"), (False, "error")]


def test_a_fallback_continues_the_same_call(fake, tmp_path) -> None:
    client = Client(providers=fake.providers("openai", "anthropic"), ledger=f"sqlite:///{tmp_path}/l.db",
                    fallbacks=[{"model": "gpt-4o-mini", "then": ["anthropic/claude-haiku-4-5"]}],
                    sleep=lambda s: None)
    fake.queue(*[Reply(status=500, error="down")] * 3, Reply(text="from claude", usage=USAGE))
    assert client.chat(model="gpt-4o-mini", messages=HI).content == "from claude"
    rows = _rows(client)
    assert len(rows) == len(fake.requests) == 4
    assert [(x.provider, x.attempt, x.retried) for x in rows] == [
        ("openai", 1, True), ("openai", 2, True), ("openai", 3, False), ("anthropic", 4, False)]
    assert len({x.call_id for x in rows}) == 1 and rows[3].fallback_from == "openai/gpt-4o-mini"


def test_separate_calls_have_separate_call_ids(fake, tmp_path) -> None:
    client = _client(fake.url, "openai", tmp_path)
    client.chat(model="gpt-4o-mini", messages=HI)
    client.chat(model="gpt-4o-mini", messages=HI)
    rows = list(client.ledger.records())
    assert len({x.call_id for x in rows}) == 2 and all(x.attempt == 1 and not x.retried for x in rows)


def test_retried_rows_leave_the_budget_hold_to_the_call(fake, tmp_path) -> None:
    client = Client(providers=fake.providers("openai"), ledger=f"sqlite:///{tmp_path}/l.db",
                    budgets=[{"name": "b", "limit_usd": 1, "period": "total"}], sleep=lambda s: None)
    fake.queue(Reply(status=500, error="x"), Reply(text="ok", usage=USAGE))
    r = client.chat(model="gpt-4o-mini", messages=HI, max_tokens=20)
    status = client.budgets.status()[0]
    assert status["spent_usd"] == r.cost.total_usd and status["reserved_usd"] == 0
    assert len(list(client.ledger.records())) == len(fake.requests) == 2


class _CutBody:
    """A vendor that answers 200 with a Content-Length it never delivers: the body is cut."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.requests = 0
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                head, _, body = data.partition(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(body) < length:
                    body += conn.recv(65536)
                self.requests += 1
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                             b"content-length: 5000\r\n\r\n{\"id\": \"cut\", \"choices\": [")

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("provider", list(MODELS))
def test_a_body_cut_mid_way_is_retried_and_every_attempt_is_an_unknown_row(tmp_path, provider) -> None:
    vendor = _CutBody()
    try:
        client = _client(vendor.url, provider, tmp_path)
        with pytest.raises(errors.ProviderError):
            client.chat(model=f"{provider}/{MODELS[provider]}", messages=HI)
        rows = _rows(client)
        assert len(rows) == vendor.requests == 3
        assert all(x.status == "unknown" and x.total_usd is None for x in rows)
        assert [x.retried for x in rows] == [True] * (len(rows) - 1) + [False]
    finally:
        vendor.close()


# ── the store: retried rows round-trip and summary(retries=False), SQLite and PostgreSQL ──

def _summaries(store) -> tuple[list, list]:
    from tests.conftest import rec
    store.record_many([rec(call_id="c1", attempt=1, retried=True, status="error", cost=None, tin=0, tout=0),
                       rec(call_id="c1", attempt=2, retried=True, status="unknown", cost=None, tin=0, tout=0),
                       rec(call_id="c1", attempt=3)])
    rows = sorted(store.records(), key=lambda r: r.attempt)
    assert [(r.call_id, r.attempt, r.retried, r.status) for r in rows] == [
        ("c1", 1, True, "error"), ("c1", 2, True, "unknown"), ("c1", 3, False, "ok")]
    return store.summary(), store.summary(retries=False)


def _check(every: list, final: list) -> None:
    assert (every[0]["calls"], final[0]["calls"]) == (3, 1)
    assert every[0]["cost_usd"] == final[0]["cost_usd"] == rec_cost()


def rec_cost():
    from decimal import Decimal
    return Decimal("0.00035")


def test_sqlite_store_keeps_attempts_and_summary_can_leave_retries_out(tmp_path) -> None:
    from unillm.ledger import open_store
    store = open_store(f"sqlite:///{tmp_path}/s.db")
    try:
        _check(*_summaries(store))
    finally:
        store.close()


def test_postgres_store_keeps_attempts_and_summary_can_leave_retries_out(pg_url) -> None:  # noqa: F811
    from unillm.ledger import open_store
    store = open_store(pg_url)
    try:
        _check(*_summaries(store))
    finally:
        store.close()


def test_the_cli_summary_shows_or_leaves_out_retried_attempts(tmp_path) -> None:
    import json as _json

    from click.testing import CliRunner

    from unillm.cli import cli
    from unillm.ledger import open_store
    url = f"sqlite:///{tmp_path}/s.db"
    store = open_store(url)
    try:
        _summaries(store)
    finally:
        store.close()
    runner = CliRunner()
    every = runner.invoke(cli, ["ledger", "summary", "--ledger", url, "--by", "provider", "--format", "json"])
    final = runner.invoke(cli, ["ledger", "summary", "--ledger", url, "--by", "provider", "--format", "json",
                                "--no-retries"])
    assert every.exit_code == final.exit_code == 0, every.output + final.output
    assert (_json.loads(every.output)[0]["calls"], _json.loads(final.output)[0]["calls"]) == (3, 1)


def test_a_call_that_ends_unknown_counts_its_worst_case_against_the_budget(fake, tmp_path) -> None:
    # sent, then no answer within the timeout: the vendor may bill it, so its hold is never refunded
    client = Client(providers={"openai": {"base_url": fake.url + "/v1", "api_key": "sk-test-key-123456",
                                          "timeout": 0.3, "max_retries": 0}},
                    ledger=f"sqlite:///{tmp_path}/l.db", budgets=[{"name": "b", "limit_usd": "1"}])
    fake.queue(Reply(delay=1.5))
    with pytest.raises(errors.TimeoutError):
        client.chat(model="gpt-4o-mini", messages=HI, max_tokens=100)
    (row,) = client.ledger.records()
    (status,) = client.budgets.status()
    assert row.status == "unknown" and status["reserved_usd"] == 0
    # the worst case: the prompt at $0.15/M plus 100 output tokens at $0.60/M (more than $0.00006)
    assert status["spent_usd"] > 0.00006
