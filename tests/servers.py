"""Real PostgreSQL and Redis servers for tests, started from the installed Debian packages.

Each server runs on 127.0.0.1 on a free port, in its own temporary directory, and
is stopped (and its directory removed) when the session ends. PostgreSQL refuses
to run as root, so under root it runs as the ``postgres`` system user the package
creates (else ``nobody``), with its directory handed to that user.

Fixtures (import them into a test module: ``from tests.servers import postgres_url``):

* ``postgres_url`` (session): a superuser URL of the running server's ``postgres`` db;
* ``pg_url``: a fresh, empty database on that server for one test;
* ``redis_url`` (session): ``redis://127.0.0.1:PORT/0``, flushed before each test
  by ``redis_fresh``.

Missing binaries or drivers skip these tests with a message saying what to install;
when ``$CI`` is set they FAIL instead: CI always runs them (``.ci/run`` installs them).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

PG_SUPERUSER = "unillm"
INSTALL_HINT = ("apt-get install -y --no-install-recommends postgresql redis-server && "
                "pip install -e '.[postgres,redis]'")


def open_files(under: Path) -> list[str]:
    """Files under ``under`` this process holds open (from /proc/self/fd: the real state)."""
    out = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(under)):
            out.append(target)
    return out


def unavailable(what: str) -> None:
    """Skip (locally) or fail (under CI) because ``what`` is missing."""
    message = f"{what} is not available; install it with: {INSTALL_HINT}"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the server tests: {message}", pytrace=False)
    pytest.skip(message)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Wait until ``url`` answers 200 (a gateway started as a process), or fail naming why."""
    import httpx
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise AssertionError(f"the gateway exited: {err!s}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.1)


def worker_connections(base: str, headers: dict[str, str], workers: int = 2, tries: int = 80) -> list[Any]:
    """One kept-alive ``httpx.Client`` to each of a ``--workers N`` gateway's processes (told
    apart by the pid ``/admin/health`` answers)."""
    import httpx
    conns: dict[int, httpx.Client] = {}
    for _ in range(tries):
        c = httpx.Client(timeout=60)
        pid = c.get(base + "/admin/health", headers=headers).json()["pid"]
        if pid in conns:
            c.close()
        else:
            conns[pid] = c
        if len(conns) == workers:
            return list(conns.values())
    raise AssertionError(f"did not reach {workers} workers")


def _stop(proc: subprocess.Popen | None, sig: int, timeout: float) -> None:
    """Ask a server to stop with ``sig``; kill it if it has not within ``timeout`` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server did not listen on port {port} within {timeout}s:\n{_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-20:])
    except OSError:
        return "(no log)"


# ── PostgreSQL ───────────────────────────────────────────────────────────────

def pg_bindir() -> Path | None:
    """The newest installed PostgreSQL server's bin directory (Debian keeps it off PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and shutil.which("postgres") else None


def _unprivileged() -> pwd.struct_passwd | None:
    """Whom to run PostgreSQL as: None when we are not root, else postgres (or nobody)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    raise RuntimeError("running as root and neither a 'postgres' nor a 'nobody' user exists")


class PostgresServer:
    """``initdb`` + ``postgres`` in a temporary directory; trust auth on loopback, except
    for the role ``secret_role`` whose password is checked (scram-sha-256)."""

    def __init__(self, bindir: Path) -> None:
        self.bindir = bindir
        self.user = _unprivileged()
        self.root = Path(tempfile.mkdtemp(prefix="unillm-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def _run_as(self) -> dict:
        if self.user is None:
            return {}
        return {"user": self.user.pw_uid, "group": self.user.pw_gid, "extra_groups": []}

    def start(self) -> PostgresServer:
        if self.user is not None:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        subprocess.run([str(self.bindir / "initdb"), "-D", str(self.data), "-U", PG_SUPERUSER,
                        "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
                       check=True, capture_output=True, cwd=self.root, **self._run_as())
        (self.data / "pg_hba.conf").write_text(
            "host all secret_role 127.0.0.1/32 scram-sha-256\n"
            "local all all trust\nhost all all 127.0.0.1/32 trust\n")
        for attempt in range(3):
            try:
                return self._launch(free_port())
            except RuntimeError:
                self.stop(remove=False)
                if attempt == 2:
                    raise
        return self

    def _launch(self, port: int) -> PostgresServer:
        self.port = port
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port),
                 "-h", "127.0.0.1", "-k", str(self.root), "-c", "fsync=off",
                 "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=200", "-c", "shared_buffers=32MB"],
                stdout=log, stderr=subprocess.STDOUT, cwd=self.root,
                start_new_session=True, **self._run_as())
        _wait_port(self.port, self.proc, self.log)
        self._wait_ready()
        return self

    def restart(self) -> None:
        """Stop and start again on the same port and data (every connection is dropped)."""
        self.stop(remove=False)
        self._launch(self.port)

    def _wait_ready(self, timeout: float = 30.0) -> None:
        import psycopg
        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.url(), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL not ready:\n{_tail(self.log)}") from None
                time.sleep(0.1)

    def url(self, db: str = "postgres", user: str = PG_SUPERUSER) -> str:
        return f"postgresql://{user}@127.0.0.1:{self.port}/{db}"

    def stop(self, remove: bool = True) -> None:
        _stop(self.proc, signal.SIGINT, 30)  # SIGINT: PostgreSQL's fast shutdown
        self.proc = None
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


def create_database(server_url: str) -> str:
    """A new empty database on the server of ``server_url``; returns its URL."""
    import psycopg
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        unavailable("the psycopg driver (psycopg[binary,pool])")
    bindir = pg_bindir()
    if bindir is None:
        unavailable("PostgreSQL (initdb/postgres binaries)")
    server = PostgresServer(bindir).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server: PostgresServer) -> str:
    return postgres_server.url()


@pytest.fixture
def pg_url(postgres_url: str) -> str:
    return create_database(postgres_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """A fresh ledger store of each backend (the PostgreSQL one on the test server)."""
    from unillm.ledger import open_store
    url = f"sqlite:///{tmp_path}/l.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    store = open_store(url)
    try:
        yield store
    finally:
        store.close()


# ── Redis ────────────────────────────────────────────────────────────────────

class RedisServer:
    """``redis-server`` on loopback, no persistence, in a temporary directory."""

    def __init__(self, binary: str, port: int | None = None) -> None:
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="unillm-redis-"))
        self.log = self.root / "redis.log"
        self.port = port or 0
        self.proc: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        fixed = bool(self.port)
        for attempt in range(3):
            self.port = self.port if fixed else free_port()
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(
                    [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                     "--dir", str(self.root), "--save", "", "--appendonly", "no",
                     "--daemonize", "no", "--protected-mode", "yes"],
                    stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True)
            try:
                _wait_port(self.port, self.proc, self.log)
                return self
            except RuntimeError:
                self.stop(remove=False)
                if attempt == 2:
                    raise
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self, remove: bool = True) -> None:
        _stop(self.proc, signal.SIGTERM, 10)
        self.proc = None
        if remove:
            shutil.rmtree(self.root, ignore_errors=True)


def redis_binary() -> str:
    """The redis-server path, or skip/fail (see `unavailable`) when it or redis-py is missing."""
    try:
        import redis  # noqa: F401
    except ImportError:
        unavailable("the redis driver (redis-py)")
    binary = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
    if binary is None:
        unavailable("Redis (the redis-server binary)")
    return binary  # type: ignore[return-value]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(redis_binary()).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def redis_fresh(redis_url: str) -> str:
    """``redis_url`` with its database emptied first."""
    import redis
    with redis.Redis.from_url(redis_url) as r:
        r.flushdb()
    return redis_url


# ── a workload to record into two stores and compare ────────────────────────

def workload(n: int = 300, seed: int = 7) -> list:
    """``n`` varied records: days across week and month ends, every status, tags,
    nested sections, unpriced calls, savings, latencies (some missing), fine money."""
    import random
    from datetime import datetime, timedelta, timezone
    from decimal import Decimal

    from unillm.ledger import CallRecord
    from unillm.types import Cost, Usage

    rng = random.Random(seed)
    start = datetime(2025, 1, 24, 22, 0, tzinfo=timezone.utc)  # a Friday, near a month end
    models = [("openai", "gpt-4o"), ("openai", "gpt-4o-mini"), ("anthropic", "claude-sonnet-4-5"),
              ("google", "gemini-2.5-flash")]
    statuses = ["ok"] * 6 + ["error", "cache_hit", "budget_denied", "unpriced", "partial"]
    out = []
    for i in range(n):
        provider, model = rng.choice(models)
        status = rng.choice(statuses)
        usage = Usage(input_tokens=rng.randint(0, 5000), output_tokens=rng.randint(0, 800),
                      cache_read_tokens=rng.choice([0, 0, 128]))
        cost = None if status == "unpriced" else Cost(
            input_usd=Decimal(rng.randint(0, 10**9)).scaleb(-15),
            output_usd=Decimal(rng.randint(0, 10**6)).scaleb(-10),
            other_usd=Decimal("0.000000000000000001") * rng.randint(0, 3))
        tags = {k: v for k, v in (("user", rng.choice(["u1", "u2", "u3", None])),
                                  ("project", rng.choice(["bot", "etl"]))) if v}
        out.append(CallRecord.from_parts(
            provider=provider, model=model, usage=usage, cost=cost, status=status,
            started_at=start + timedelta(minutes=97 * i + rng.randint(0, 50)),
            latency_ms=None if i % 9 == 0 else round(rng.uniform(5, 3000), 3),
            tags=tags, section=rng.choice([None, "agent:a", "agent:a/llm:b", "agent:ab"]),
            saved_usd=Decimal("0.0125") if status == "cache_hit" else Decimal(0),
            saved_reason="cache" if status == "cache_hit" else None,
            stream=bool(i % 2)))
    return out
