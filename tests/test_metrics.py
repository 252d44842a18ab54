"""Prometheus ``GET /metrics`` at the gateway (`unillm.server.metrics`), scraped for real and
parsed with `prometheus_client.parser`: one process in a thread, and ``unillm serve --workers 2``."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("starlette")
pytest.importorskip("prometheus_client")
openai = pytest.importorskip("openai")

from prometheus_client.parser import text_string_to_metric_families

from tests.servers import free_port, wait_ready
from tests.test_server_support import Served, make_served
from unillm import errors
from unillm.config import load_settings
from unillm.server.keys import KeyStore
from unillm.server.run import AppFactory
from unillm.testing import FakeProvider, Reply

MSG = [{"role": "user", "content": "2+2?"}]


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape: (name, sorted labels) -> value."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def total(found: dict[Any, float], name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in found.items() if n == name and all((k, v2) in ls for k, v2 in labels.items()))


@pytest.fixture
def upstream() -> Iterator[FakeProvider]:
    with FakeProvider() as fake:
        yield fake


def served_with(fake: FakeProvider, tmp_path: Path, **metrics: Any) -> Iterator[Served]:
    yield from make_served(fake, tmp_path, cache="memory",
                           server={"metrics": {"enabled": True, **metrics}})


def test_metrics_are_off_by_default_no_route_nothing_counted(upstream: FakeProvider, tmp_path: Path) -> None:
    for s in make_served(upstream, tmp_path):
        assert s.gateway.metrics is None
        s.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG)
        r = httpx.get(s.url + "/metrics", headers={"authorization": f"Bearer {s.admin}"})
        assert r.status_code == 404


def test_metrics_off_imports_nothing_of_prometheus(tmp_path: Path) -> None:
    code = ("import sys; from unillm import Client; from unillm.server.app import create_app; "
            f"app = create_app(Client(ledger={f'sqlite:///{tmp_path}/l.db'!r}, cache='off')); "
            "assert app.state.gateway.metrics is None; print('prometheus_client' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
    assert out.stdout.strip() == "False"


def test_a_scrape_needs_an_admin_key_unless_the_network_is_allowed(upstream: FakeProvider, tmp_path: Path) -> None:
    for s in served_with(upstream, tmp_path):
        user = s.key(user="ann")
        assert httpx.get(s.url + "/metrics").status_code == 401
        assert httpx.get(s.url + "/metrics", headers={"authorization": f"Bearer {user}"}).status_code == 403
        ok = httpx.get(s.url + "/metrics", headers={"authorization": f"Bearer {s.admin}"})
        assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/plain")
    for s in served_with(upstream, tmp_path / "open", allow_from=["127.0.0.0/8"]):
        assert httpx.get(s.url + "/metrics").status_code == 200
    for s in served_with(upstream, tmp_path / "other", allow_from=["10.0.0.0/8"]):
        assert httpx.get(s.url + "/metrics").status_code == 401  # loopback is not in 10/8


def test_calls_tokens_cost_latency_ttft_cache_refusals_and_budgets_are_scraped(
        upstream: FakeProvider, tmp_path: Path) -> None:
    for s in served_with(upstream, tmp_path):
        ann_secret, ann = s.gateway.keys.create(user="ann", budget_usd="1.00", rpm=2)
        sdk = s.openai(ann_secret)
        upstream.queue(Reply(text="four", usage={"input_tokens": 1000, "output_tokens": 500}))
        sdk.chat.completions.create(model="gpt-4o-mini", messages=MSG, temperature=0)
        sdk.chat.completions.create(model="gpt-4o-mini", messages=MSG, temperature=0)  # the cache answers
        with pytest.raises(openai.RateLimitError):  # rpm = 2
            sdk.chat.completions.create(model="gpt-4o-mini", messages=MSG)
        admin = s.openai()
        upstream.queue(Reply(text="streamed answer", usage={"input_tokens": 10, "output_tokens": 3}))
        chunks = list(admin.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "s"}],
                                                    stream=True))
        assert chunks
        upstream.queue(Reply(status=500, error="upstream broke"))
        with pytest.raises(openai.InternalServerError):
            admin.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        for i in range(3):  # models a caller makes up (unpriced: refused) never become series
            with pytest.raises(openai.NotFoundError):
                admin.chat.completions.create(model=f"openai/made-up-{i}", messages=MSG)
        httpx.get(s.url + "/v1/models", headers={"authorization": "Bearer ulk_not_a_real_key_at_all"})
        found = samples(httpx.get(s.url + "/metrics", headers={"authorization": f"Bearer {s.admin}"}).text)
        rows = list(s.client.ledger.records())
    model = "gpt-4o-mini"
    assert total(found, "unillm_requests_total", key=ann.id, status="ok") == 1
    assert total(found, "unillm_requests_total", key=ann.id, status="cache_hit") == 1
    assert total(found, "unillm_cache_hits_total", key=ann.id) == 1
    assert total(found, "unillm_tokens_total", key=ann.id, type="input") == 1000
    assert total(found, "unillm_tokens_total", key=ann.id, type="output") == 500
    # cost: what the ledger says ann's call cost (float64 of the exact decimal)
    (paid,) = [r.total_usd for r in rows if r.tags.get("key_id") == ann.id and r.status == "ok"]
    (saved,) = [r.saved_usd for r in rows if r.tags.get("key_id") == ann.id and r.status == "cache_hit"]
    assert paid and total(found, "unillm_cost_usd_total", key=ann.id, provider="openai") == float(paid)
    assert total(found, "unillm_cache_saved_usd_total", key=ann.id) == float(saved) == float(paid)
    assert total(found, "unillm_rate_limit_refusals_total", key=ann.id, limit="rpm") == 1
    assert total(found, "unillm_request_duration_seconds_count", model=model) == 3
    assert total(found, "unillm_time_to_first_token_seconds_count", model=model) == 1
    assert total(found, "unillm_request_errors_total", error="ServerError") == 1
    assert total(found, "unillm_requests_total", status="error", model=model) == 1
    assert total(found, "unillm_requests_total", status="error", model="other") == 3
    assert not [k for k in found if "made-up" in str(k)]
    assert total(found, "unillm_invalid_api_keys_total") == 1
    budget = {k: v for k, v in found.items() if k[0] == "unillm_budget_spent_usd" and f"key_id={ann.id}" in
              dict(k[1])["scope"]}
    assert list(budget.values()) == [float(paid)]
    assert total(found, "unillm_budget_limit_usd", scope=f"key_id={ann.id}") == 1.0
    assert total(found, "unillm_budget_used_ratio", scope=f"key_id={ann.id}") == pytest.approx(float(paid))


def test_metrics_settings_are_validated_at_load() -> None:
    with pytest.raises(errors.ConfigError, match=r"server\.metrics\.allow_from.*CIDR"):
        load_settings(None, server={"metrics": {"allow_from": ["not-a-net"]}})
    with pytest.raises(errors.ConfigError, match=r"server\.metrics\.enable"):
        load_settings(None, server={"metrics": {"enable": True}})


def _counts_per_worker(directory: str) -> dict[str, float]:
    """unillm_requests_total per worker process, read from prometheus-client's files."""
    from prometheus_client.mmap_dict import MmapedDict
    out = {}
    for path in glob.glob(os.path.join(directory, "counter_*.db")):
        n = 0.0
        for key, value, _ts, _pos in MmapedDict.read_all_values_from_file(path):
            if json.loads(key)[0] == "unillm_requests":
                n += value
        out[path] = n
    return out


def test_a_scrape_under_two_workers_sums_both(tmp_path: Path) -> None:
    with FakeProvider(Reply(text="ok", usage={"input_tokens": 3, "output_tokens": 2}, delay=0.05)) as fake:
        table = fake.providers("openai")["openai"]
        config = tmp_path / "unillm.toml"
        config.write_text("\n".join([
            f"ledger = {json.dumps(f'sqlite:///{tmp_path}/l.db')}", 'cache = "off"', "",
            "[server.metrics]", "enabled = true", "",
            "[providers.openai]", *(f"{k} = {json.dumps(v)}" for k, v in table.items()), "max_retries = 0"]) + "\n")
        secret, key = KeyStore(AppFactory(str(config)).client().ledger.store).create(user="bob", admin=True)
        port = free_port()
        env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(Path(__file__).parents[1])}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        proc = subprocess.Popen([sys.executable, "-m", "unillm", "serve", "--config", str(config),
                                 "--port", str(port), "--workers", "2", "--log-level", "warning"],
                                env=env, cwd=tmp_path)
        try:
            wait_ready(f"http://127.0.0.1:{port}/health", proc)

            def call(_: int) -> None:  # a fresh connection each: the kernel spreads them over the workers
                with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
                    r = http.post("/v1/chat/completions", json={"model": "gpt-4o-mini", "messages": MSG},
                                  headers={"authorization": f"Bearer {secret}"})
                    assert r.status_code == 200, r.text
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(call, range(40)))
            scrapes = [samples(httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=60,
                                         headers={"authorization": f"Bearer {secret}"}).text) for _ in range(6)]
            (shared,) = glob.glob(str(tmp_path / "unillm-metrics-*"))
            per_worker = _counts_per_worker(shared)
        finally:
            proc.terminate()
            proc.wait(20)
    assert sorted(per_worker.values())[-2] > 0, per_worker  # both workers answered calls
    for found in scrapes:  # whichever worker answered the scrape, it counted both
        assert total(found, "unillm_requests_total", key=key.id, status="ok") == 40
        assert total(found, "unillm_tokens_total", key=key.id, type="input") == 40 * 3
        assert total(found, "unillm_request_duration_seconds_count", model="gpt-4o-mini") == 40
    assert not glob.glob(str(tmp_path / "unillm-metrics-*"))  # removed when the server stopped


def test_deployment_health_is_scraped(tmp_path: Path) -> None:
    """A dead deployment shows as cooling (0) beside a healthy one (1), with its error ratio."""
    from unillm.testing import Reply
    with FakeProvider() as dead, FakeProvider() as live:
        dead.default = Reply(status=503, error="down")
        providers = {"east": {"adapter": "openai", "base_url": dead.base_url("openai"), "api_key": "k", "price_as": "openai",
                              "max_retries": 0},
                     "west": {"adapter": "openai", "base_url": live.base_url("openai"), "api_key": "k", "price_as": "openai",
                              "max_retries": 0}}
        deployments = [{"model": "gpt-4o-mini", "provider": "east"}, {"model": "gpt-4o-mini", "provider": "west"}]
        from unillm import Client
        from unillm.server.app import create_app
        from tests.test_server_support import serve_app
        client = Client(providers=providers, ledger=f"sqlite:///{tmp_path}/l.db", deployments=deployments,
                        routing={"strategy": "ordered", "cooldown_after": 2},
                        server={"metrics": {"enabled": True, "allow_from": ["127.0.0.0/8"]}})
        app = create_app(client)
        admin, _ = app.state.gateway.keys.create(admin=True)
        try:
            for url in serve_app(app):
                sdk = openai.OpenAI(base_url=url + "/v1", api_key=admin, max_retries=0)
                for _ in range(4):
                    sdk.chat.completions.create(model="gpt-4o-mini", messages=MSG)
                text = httpx.get(url + "/metrics").text
        finally:
            client.close()
    up = {s.labels["deployment"]: s.value for f in text_string_to_metric_families(text)
          if f.name == "unillm_deployment_up" for s in f.samples}
    errors_ = {s.labels["deployment"]: s.value for f in text_string_to_metric_families(text)
               if f.name == "unillm_deployment_error_ratio" for s in f.samples}
    assert up == {"east/gpt-4o-mini": 0.0, "west/gpt-4o-mini": 1.0}
    assert errors_["east/gpt-4o-mini"] == 1.0 and errors_["west/gpt-4o-mini"] == 0.0
