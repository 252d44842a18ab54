"""Backends: the memory LRU (TTL on a fake clock) and diskcache, and how they survive
corrupt entries, corrupt directories, concurrent processes and a full disk."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unillm.cache import CacheBackend, NullCache, make_entry
from unillm.cache.disk import DiskCache
from unillm.cache.memory import MemoryCache
from unillm.types import ChatResponse, Choice, ResponseMessage, Usage

diskcache = pytest.importorskip("diskcache")
ROOT = Path(__file__).resolve().parents[1]


def entry(text: str = "hello", namespace: str = "default"):
    return make_entry(ChatResponse(
        id="r", created=1, model="m", provider="openai", usage=Usage(input_tokens=2, output_tokens=3),
        choices=[Choice(message=ResponseMessage(content=text), finish_reason="stop")]), namespace=namespace)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def disk(tmp_path: Path):
    warnings: list[str] = []
    cache = DiskCache(tmp_path / "cache", warn=warnings.append)
    cache.warnings = warnings  # type: ignore[attr-defined]
    yield cache
    cache.close()


def raw_set(cache: DiskCache, key: str, value, **kw) -> None:
    """Write through plain diskcache, as another program sharing the directory could."""
    with diskcache.Cache(str(cache.directory)) as other:
        other.set(key, value, **kw)


def raw_has(cache: DiskCache, key: str) -> bool:
    with diskcache.Cache(str(cache.directory)) as other:
        return key in other


def raw_expire_time(cache: DiskCache, key: str) -> float:
    with diskcache.Cache(str(cache.directory)) as other:
        return other.get(key, expire_time=True)[1]


# ── behaviour every backend shares ───────────────────────────────────────────

@pytest.fixture(params=["memory", "disk", "off"])
def backend(request, tmp_path: Path):
    b = {"memory": lambda: MemoryCache(), "disk": lambda: DiskCache(tmp_path / "c"),
         "off": lambda: NullCache()}[request.param]()
    yield b
    b.close()


def test_backends_satisfy_the_protocol(backend) -> None:
    assert isinstance(backend, CacheBackend)


def test_set_get_delete_clear(backend) -> None:
    stores = not isinstance(backend, NullCache)
    backend.set("k1", entry("one", "a"))
    backend.set("k2", entry("two", "b"))
    backend.set("k3", entry("three", "b"))
    got = backend.get("k1")
    assert (got.response.content if got else None) == ("one" if stores else None)
    assert backend.stats()["entries"] == (3 if stores else 0)
    assert backend.stats()["size_bytes"] > (0 if stores else -1)
    backend.delete("k1")
    assert backend.get("k1") is None
    assert backend.clear("b") == (2 if stores else 0)
    assert backend.get("k2") is None and backend.stats()["entries"] == 0
    backend.set("k4", entry())
    assert backend.clear() == (1 if stores else 0)


def test_a_hit_is_a_fresh_object(backend) -> None:
    backend.set("k", entry("original"))
    first = backend.get("k")
    if isinstance(backend, NullCache):
        assert first is None
        return
    first.response.choices[0].message.content = "changed by the caller"
    assert backend.get("k").response.content == "original"


# ── memory: LRU and TTL on an injected clock ─────────────────────────────────

def test_memory_ttl_expires_on_the_clock_without_sleeping() -> None:
    clock = Clock()
    cache = MemoryCache(ttl=60, clock=clock)
    cache.set("default-ttl", entry())
    cache.set("own-ttl", entry(), ttl=10)
    clock.now += 9.9
    assert cache.get("own-ttl") is not None
    clock.now += 0.1
    assert cache.get("own-ttl") is None           # expired at exactly 10 s
    assert cache.get("default-ttl") is not None
    clock.now += 50
    assert cache.get("default-ttl") is None


def test_memory_prune_removes_only_expired() -> None:
    clock = Clock()
    cache = MemoryCache(clock=clock)
    cache.set("forever", entry())
    cache.set("short", entry(), ttl=1)
    cache.set("long", entry(), ttl=100)
    clock.now += 5
    assert cache.prune() == 1
    assert cache.stats()["entries"] == 2 and cache.get("forever") and cache.get("long")


def test_memory_evicts_least_recently_used() -> None:
    cache = MemoryCache(max_entries=2)
    cache.set("a", entry("a"))
    cache.set("b", entry("b"))
    cache.get("a")                                # a is now the most recent
    cache.set("c", entry("c"))
    assert cache.get("b") is None and cache.get("a") and cache.get("c")


# ── disk: entries, TTL, size limit ───────────────────────────────────────────

def test_disk_reads_entries_in_the_index_and_in_files_alike(disk: DiskCache) -> None:
    """`DiskCache.get` reads a small entry from its row itself; one past diskcache's 32 KB
    file threshold lives in a file and is read through diskcache: both are hits."""
    disk.set("small", entry("short answer"))
    disk.set("large", entry("long answer " * 5000))
    assert disk.get("small").response.content == "short answer"
    assert disk.get("large").response.content == "long answer " * 5000
    assert disk.get("absent") is None
    assert [f for f in (disk.directory).rglob("*.val")]  # the large one really is in a file


def test_disk_entries_survive_reopening(tmp_path: Path) -> None:
    first = DiskCache(tmp_path / "c")
    first.set("k", entry("persisted"))
    first.close()
    second = DiskCache(tmp_path / "c")
    assert second.get("k").response.content == "persisted"
    second.close()


def test_disk_ttl_and_prune(disk: DiskCache) -> None:
    # TTL logic is tested on the memory backend's fake clock; diskcache reads time.time()
    # itself, so here a tiny TTL (stored last: every store also culls expired entries)
    disk.set("kept", entry(), ttl=3600)
    disk.set("short", entry(), ttl=1e-6)
    time.sleep(0.01)
    assert disk.get("short") is None
    assert disk.prune() == 1
    assert disk.get("kept") is not None


def test_disk_default_ttl_from_the_url_option(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "c", ttl=3600)
    cache.set("k", entry())
    expire_time = raw_expire_time(cache, "k")
    assert 3590 < expire_time - time.time() <= 3600
    cache.close()


def test_disk_size_limit_evicts_oldest(tmp_path: Path) -> None:
    cache = DiskCache(tmp_path / "c", size_limit=1_000_000)
    for i in range(60):
        cache.set(f"k{i}", entry(f"{i}:" + "x" * 40_000))  # 40 KB each: stored as files
    stats = cache.stats()
    assert stats["size_bytes"] <= 1_100_000 and 10 <= stats["entries"] < 30
    assert cache.get("k59") is not None and cache.get("k0") is None
    cache.close()


# ── disk: corrupt, truncated and foreign entries are misses, then removed ────

def _assert_miss_and_removed(disk: DiskCache, key: str) -> None:
    assert disk.get(key) is None
    assert not raw_has(disk, key)
    assert disk.warnings == []  # a bad entry is routine, not a degradation
    disk.set(key, entry("fresh"))  # and the slot is usable again
    assert disk.get(key).response.content == "fresh"


@pytest.mark.parametrize("value", [
    b"not json at all", b'{"format": "unillm.cache", "v": 1', b'{"something": "else"}', "a str value", 12345,
    b'{"format": "unillm.cache", "v": 7}',
])
def test_corrupt_or_foreign_values_are_misses(disk: DiskCache, value) -> None:
    raw_set(disk, "k", value)
    _assert_miss_and_removed(disk, "k")


class _Planted:
    """A pickle that, if ever loaded, leaves a file behind."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_planted_pickle_is_never_loaded(disk: DiskCache, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    raw_set(disk, "k", {"payload": _Planted(marker)})           # small: pickled into sqlite
    raw_set(disk, "big", [_Planted(marker)] + ["x" * 50_000])    # large: a pickle file
    assert disk.get("k") is None and disk.get("big") is None
    assert not marker.exists()
    assert not raw_has(disk, "k") and not raw_has(disk, "big")


def test_a_truncated_value_file_is_a_miss(disk: DiskCache) -> None:
    disk.set("big", entry("y" * 100_000))                       # stored as a .val file
    files = list(disk.directory.rglob("*.val"))
    assert len(files) == 1
    data = files[0].read_bytes()
    files[0].write_bytes(data[: len(data) // 3])
    _assert_miss_and_removed(disk, "big")


def test_a_deleted_value_file_is_a_miss(disk: DiskCache) -> None:
    disk.set("big", entry("y" * 100_000))
    next(disk.directory.rglob("*.val")).unlink()
    assert disk.get("big") is None


# ── disk: corrupt directories never raise ────────────────────────────────────

def test_a_garbage_index_is_set_aside(tmp_path: Path) -> None:
    d = tmp_path / "c"
    d.mkdir()
    (d / "cache.db").write_bytes(os.urandom(8192))
    warnings: list[str] = []
    cache = DiskCache(d, warn=warnings.append)
    cache.set("k", entry())
    assert cache.get("k") is not None
    assert (d / "cache.db.corrupt").exists()
    assert len(warnings) == 1 and "cache.db.corrupt" in warnings[0]
    cache.close()


@pytest.mark.parametrize("damage", ["flip", "truncate", "overwrite"])
def test_a_damaged_index_never_raises(tmp_path: Path, damage: str) -> None:
    d = tmp_path / "c"
    cache = DiskCache(d)
    for i in range(300):
        cache.set(f"k{i}", entry("z" * (i * 10)))
    cache.close()
    for name in ("cache.db-wal", "cache.db-shm"):
        (d / name).unlink(missing_ok=True)
    db = d / "cache.db"
    data = bytearray(db.read_bytes())
    if damage == "flip":
        for pos in range(4096, len(data), 997):
            data[pos] ^= 0xFF
    elif damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 3: len(data) // 3 + 8192] = os.urandom(8192)
    db.write_bytes(bytes(data))
    warnings: list[str] = []
    cache = DiskCache(d, warn=warnings.append)
    results = [cache.get(f"k{i}") for i in range(300)]
    cache.set("new", entry())
    stats = cache.stats()
    cache.close()
    assert all(r is None or r.response.content.startswith("z") or r.response.content == "" for r in results)
    assert len(warnings) <= 1 and stats["entries"] >= 0


def test_an_unusable_directory_degrades_to_misses_with_one_warning(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("I am a file, not a directory")
    warnings: list[str] = []
    cache = DiskCache(blocker / "cache", warn=warnings.append)
    for i in range(5):
        cache.set(f"k{i}", entry())
        assert cache.get(f"k{i}") is None
    assert len(warnings) == 1 and "cannot be opened" in warnings[0]
    assert cache.stats()["degraded"] and cache.stats()["entries"] == 0
    assert cache.clear() == 0 and cache.prune() == 0


# ── concurrent writers across processes ──────────────────────────────────────

WRITER = r"""
import json, sys, time
from unillm.cache import make_entry
from unillm.cache.disk import DiskCache
from unillm.types import ChatResponse, Choice, ResponseMessage
directory, me, start = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
warnings = []
# a generous lock timeout: on a loaded machine a 2 s wait would skip a store (by design)
cache = DiskCache(directory, warn=warnings.append, lock_timeout=60)
def entry(text):
    return make_entry(ChatResponse(id="r", created=1, model="m", provider="p",
        choices=[Choice(message=ResponseMessage(content=text), finish_reason="stop")]))
while time.time() < start:
    time.sleep(0.001)
bad = 0
for i in range(60):
    cache.set(f"shared-{i}", entry(f"shared {i} from {me}"))
    cache.set(f"own-{me}-{i}", entry(f"own {i} from {me}" + ("x" * 40000 if i % 10 == 0 else "")))
    got = cache.get(f"shared-{(i * 7) % 60}")
    if got is not None and not got.response.content.startswith(f"shared {(i * 7) % 60} from "):
        bad += 1
print(json.dumps({"warnings": warnings, "bad": bad}))
"""


@pytest.mark.slow
def test_four_processes_write_concurrently(tmp_path: Path) -> None:
    d = tmp_path / "shared"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    start = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(d), str(n), str(start)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for n in range(4)]
    outputs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outputs):
        assert p.returncode == 0, err
        report = json.loads(out)
        assert report == {"warnings": [], "bad": 0}
    cache = DiskCache(d)
    for i in range(60):
        assert cache.get(f"shared-{i}").response.content.startswith(f"shared {i} from ")
        for n in range(4):
            got = cache.get(f"own-{n}-{i}")
            assert got is not None and got.response.content.startswith(f"own {i} from {n}")
    assert cache.stats()["entries"] == 60 + 4 * 60
    cache.close()


# ── a full disk: no exception, one warning, old hits still served ────────────

FULL_DISK = r"""
import json, os, resource, signal, sys, warnings
from unillm.cache import CacheWarning, make_entry
from unillm.cache.disk import DiskCache
from unillm.types import ChatResponse, Choice, ResponseMessage
directory, size = sys.argv[1], int(sys.argv[2])
def entry(text):
    return make_entry(ChatResponse(id="r", created=1, model="m", provider="p",
        choices=[Choice(message=ResponseMessage(content=text), finish_reason="stop")]))
cache = DiskCache(directory)                       # the default warning: warnings.warn, once
cache.set("before", entry("stored before the disk filled"))
largest = max(os.path.getsize(os.path.join(directory, f)) for f in os.listdir(directory))
# The process may not grow any file beyond this: writes fail with EFBIG, as on a full disk.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (largest + 4096, resource.RLIM_INFINITY))
errors = []
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    for i in range(100):
        try:
            cache.set(f"after-{i}", entry(f"{i}:" + "x" * size))
        except BaseException as exc:
            errors.append(repr(exc))
    before = cache.get("before")
print(json.dumps({
    "errors": errors,
    "warnings": [str(w.message) for w in caught if issubclass(w.category, CacheWarning)],
    "other_warnings": [str(w.message) for w in caught if not issubclass(w.category, CacheWarning)],
    "before": before.response.content if before else None,
    "after": cache.get("after-99") is not None,
    "degraded": cache.stats()["degraded"],
}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE semantics are Linux's")
@pytest.mark.parametrize("size, where", [(300, "sqlite index"), (60_000, "value file")])
def test_a_full_disk_degrades_with_one_warning(tmp_path: Path, size: int, where: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path / "c"), str(size)], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["errors"] == [], where
    assert len(report["warnings"]) == 1, report["warnings"]
    assert "cannot store entries" in report["warnings"][0]
    assert report["other_warnings"] == []
    assert report["before"] == "stored before the disk filled"   # reads go on
    assert report["after"] is False
    assert report["degraded"]
