"""Cache controls (per-call option, sampling, TTL, namespace) and cache URLs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from unillm import errors
from unillm.cache import NullCache, default_cache_dir, default_cache_url, open_cache, parse_size
from unillm.cache.disk import DiskCache
from unillm.cache.memory import MemoryCache
from unillm.cache.policy import CacheDecision, CachePolicy, is_sampled
from unillm.types import ChatRequest

ROOT = Path(__file__).resolve().parents[1]
MSGS = [{"role": "user", "content": "hi"}]


@pytest.fixture(autouse=True)
def no_cache_env(monkeypatch) -> None:
    """The developer's own UNILLM_CACHE must not leak in (conftest clears keys and home)."""
    monkeypatch.delenv("UNILLM_CACHE", raising=False)


def req(**kw) -> ChatRequest:
    return ChatRequest(model="m", messages=MSGS, **kw)


# ── policy ───────────────────────────────────────────────────────────────────

@pytest.mark.parametrize("temperature, sampled", [(None, True), (0, False), (0.0, False), (0.01, True), (2, True)])
def test_sampled_means_temperature_unset_or_above_zero(temperature, sampled) -> None:
    assert is_sampled(req(temperature=temperature)) is sampled


def test_default_policy_caches_sampled_requests_too() -> None:
    policy = CachePolicy()
    for r in (req(temperature=0), req(), req(temperature=0.7)):
        assert policy.decide(r) == CacheDecision(read=True, write=True, ttl=None, namespace="default")


def test_cache_sampled_false_caches_deterministic_requests_only() -> None:
    policy = CachePolicy.from_settings(SimpleNamespace(cache_sampled=False, cache="memory"))
    assert policy.decide(req(temperature=0)).read
    for r in (req(), req(temperature=0.7)):
        d = policy.decide(r)
        assert not d.read and not d.write and d.status == "skipped:sampled"


def test_not_configured_means_no_cache(monkeypatch) -> None:
    assert isinstance(open_cache(None), NullCache)
    assert not CachePolicy.from_settings(SimpleNamespace(cache=None)).enabled
    monkeypatch.setenv("UNILLM_CACHE", "memory")
    assert CachePolicy.from_settings(SimpleNamespace(cache=None)).enabled


@pytest.mark.parametrize("option, read, write", [
    (None, True, True), (True, True, True), (False, False, False), ("refresh", False, True),
    ({}, True, True), ({"refresh": True}, False, True),
])
def test_per_call_options(option, read, write) -> None:
    d = CachePolicy().decide(req(temperature=0), option)
    assert (d.read, d.write) == (read, write)
    assert d.active is (read or write)


def test_per_call_ttl_and_namespace_override_the_defaults() -> None:
    policy = CachePolicy(ttl=3600, namespace="prod")
    assert policy.decide(req(temperature=0)).ttl == 3600 and policy.decide(req(temperature=0)).namespace == "prod"
    d = policy.decide(req(temperature=0), {"ttl": 5, "namespace": "exp-7"})
    assert (d.ttl, d.namespace, d.read, d.write) == (5.0, "exp-7", True, True)


def test_per_call_sampled_override() -> None:
    d = CachePolicy(sampled=False).decide(req(temperature=1), {"sampled": True})
    assert d.read and d.write
    assert not CachePolicy().decide(req(temperature=1), {"sampled": False}).active
    # refresh does not bypass the sampling rule by itself
    assert not CachePolicy(sampled=False).decide(req(temperature=1), "refresh").write


def test_cache_off_in_settings_never_reads_or_writes() -> None:
    policy = CachePolicy.from_settings(SimpleNamespace(cache="off"))
    assert not policy.decide(req(temperature=0)).active


@pytest.mark.parametrize("option, words", [
    ("yes", "not understood"),
    ({"tll": 5}, "did you mean 'ttl'"),
    ({"ttl": 0}, "> 0"),
    ({"ttl": -1}, "> 0"),
    ({"ttl": "10"}, "> 0"),
    ({"ttl": True}, "> 0"),
    ({"namespace": ""}, "non-empty"),
    ({"refresh": "yes"}, "true or false"),
    (3, "not int"),
])
def test_bad_options_are_invalid_requests(option, words) -> None:
    with pytest.raises(errors.InvalidRequestError) as info:
        CachePolicy().decide(req(temperature=0), option)
    assert words in str(info.value) and info.value.param == "cache"


def test_bad_settings_are_config_errors() -> None:
    with pytest.raises(errors.ConfigError):
        CachePolicy(ttl=-5)
    with pytest.raises(errors.ConfigError):
        CachePolicy(namespace="")


# ── cache URLs ───────────────────────────────────────────────────────────────

def test_disk_url_with_options(tmp_path: Path) -> None:
    cache = open_cache(f"disk://{tmp_path}/c?size_limit=2MB&ttl=86400")
    assert isinstance(cache, DiskCache)
    assert cache.directory == tmp_path / "c" and cache.size_limit == 2_000_000 and cache.default_ttl == 86400
    assert cache.stats()["size_limit"] == 2_000_000
    cache.close()


def test_memory_and_off_urls() -> None:
    assert isinstance(open_cache("memory"), MemoryCache)
    m = open_cache("memory://?max_entries=7&ttl=30")
    assert isinstance(m, MemoryCache) and m.max_entries == 7 and m.default_ttl == 30
    assert isinstance(open_cache("off"), NullCache)


def test_disk_means_the_default_location_under_unillm_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("UNILLM_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("UNILLM_CACHE", raising=False)
    assert default_cache_dir() == tmp_path / "home" / "cache"
    assert isinstance(open_cache(None), NullCache)      # not configured: no cache at all
    cache = open_cache("disk")
    assert isinstance(cache, DiskCache) and cache.directory == tmp_path / "home" / "cache"
    assert (tmp_path / "home" / "cache" / "cache.db").exists()
    cache.close()
    monkeypatch.setenv("UNILLM_CACHE", "memory")
    assert default_cache_url() == "memory"
    assert isinstance(open_cache(None), MemoryCache)  # the env var sits between config and default


def test_default_url_round_trips_awkward_paths(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("UNILLM_HOME", str(tmp_path / "my home #1 %20"))
    monkeypatch.delenv("UNILLM_CACHE", raising=False)
    cache = open_cache(default_cache_url())
    assert cache.directory == tmp_path / "my home #1 %20" / "cache"
    cache.close()


def test_default_location_without_unillm_home(monkeypatch) -> None:
    import platformdirs
    monkeypatch.delenv("UNILLM_HOME")
    assert default_cache_dir() == Path(platformdirs.user_cache_dir("unillm")) / "cache"


@pytest.mark.parametrize("url, words", [
    ("s3://bucket/x", "unknown cache scheme 's3'"),
    ("dsik:///tmp/x", "did you mean 'disk'"),
    ("/tmp/cache", "did you mean 'disk:///tmp/cache'"),
    ("disk://relative/path", "three slashes"),
    ("disk:", "absolute path"),
    ("disk:///tmp/x?size=1GB", "did you mean 'size_limit'"),
    ("disk:///tmp/x?size_limit=lots", "size_limit='lots'"),
    ("disk:///tmp/x?ttl=0", "> 0"),
    ("memory://?max_entries=0", "at least 1"),
    ("", "cache URL"),
])
def test_bad_urls_are_config_errors(url, words) -> None:
    with pytest.raises(errors.ConfigError) as info:
        open_cache(url)
    assert words in str(info.value) and info.value.key == "cache"


def test_redis_urls_open_lazily_and_never_echo_the_password() -> None:
    pytest.importorskip("redis")
    backend = open_cache("redis://:hunter2@127.0.0.1:1/0?timeout=0.2")
    assert "hunter2" not in repr(backend) and "hunter2" not in backend.url
    with pytest.raises(errors.ConfigError) as info:
        open_cache("redis://:hunter2@cache.internal:6379/0?bogus=1")
    assert "hunter2" not in str(info.value) and "hunter2" not in repr(info.value.value)


@pytest.mark.parametrize("text, size", [("1048576", 1048576), ("500MB", 500_000_000), ("1GB", 10**9),
                                        ("1GiB", 2**30), ("1.5 kb", 1500), (4096, 4096)])
def test_parse_size(text, size) -> None:
    assert parse_size(text) == size


def test_import_unillm_does_not_load_diskcache() -> None:
    code = "import sys, unillm, unillm.cache, unillm.cache.policy; print('diskcache' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(ROOT)}, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "False"


def test_without_diskcache_no_cache_needs_nothing_and_disk_says_what_to_install(
        monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "diskcache", None)  # as if not installed
    warnings: list[str] = []
    assert isinstance(open_cache(None, warn=warnings.append), NullCache) and warnings == []
    with pytest.raises(errors.MissingDependencyError):
        open_cache("disk")
    with pytest.raises(errors.MissingDependencyError) as info:
        open_cache(f"disk://{tmp_path}/c")
    assert "unillm[cache]" in str(info.value)
