"""Per-deployment health, in-flight and usage state: in memory (one process) or in the
ledger's database (every process and host using it).

`RouteState.update(names, fn)` runs ``fn`` on the current `Health` of each named deployment
under a lock (SQL: one write transaction, the rows locked), then stores what ``fn`` changed:
the pick, its accounting and its RPM check are one atomic step across processes.

In-flight calls are leases (`Health.leases`) with an expiry, not a counter: a process that
dies mid-call leaves a lease that lapses at the call's deadline, never a deployment busy
for good. A lease also holds the tokens reserved against the deployment's TPM window.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, TypeVar

from .. import errors

T = TypeVar("T")
TABLE = "unillm_route_state"


@dataclass
class Health:
    """One deployment's shared state. Times are seconds of the router's clock."""

    cooling_until: float = 0.0     # > now: out; <= now and > 0: half-open
    probe_until: float = 0.0       # a half-open probe is in flight until then
    # calls in flight: lease id -> [expires, second of its token reservation, tokens reserved]
    leases: dict[str, list[float]] = field(default_factory=dict)
    ewma_ms: float | None = None   # latency EWMA
    ok: int = 0
    failed: int = 0
    fails: list[float] = field(default_factory=list)           # retryable failures (times)
    # the last minute's requests and tokens as [second, amount] buckets, each kept until 61 s
    # after its second began: never dropped before its true 60 s are up (limits hold exactly)
    requests: list[list[float]] = field(default_factory=list)
    tokens: list[list[float]] = field(default_factory=list)

    @property
    def inflight(self) -> int:
        """Calls in flight (leases not yet lapsed; `trim` drops the lapsed ones)."""
        return len(self.leases)

    def trim(self, now: float, window: float) -> None:
        self.fails = [t for t in self.fails if t > now - window]
        if any(lease[0] <= now for lease in self.leases.values()):  # their process died mid-call
            self.leases = {k: v for k, v in self.leases.items() if v[0] > now}
        self.requests = [p for p in self.requests if p[0] + 61.0 > now]
        self.tokens = [p for p in self.tokens if p[0] + 61.0 > now]

    def add(self, kind: str, now: float, amount: float) -> None:
        buckets: list[list[float]] = getattr(self, kind)
        second = float(int(now))
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += amount
        else:
            buckets.append([second, amount])

    def settle(self, second: float, reserved: float, used: float, now: float) -> None:
        """A reservation of ``reserved`` tokens made in ``second`` becomes ``used``, in the same
        bucket (it lapses when the reservation would have); that bucket gone, ``used`` counts now."""
        for bucket in self.tokens:
            if bucket[0] == second:
                bucket[1] = max(bucket[1] - reserved + used, 0.0)
                return
        if used:
            self.add("tokens", now, used)

    def to_json(self) -> str:
        return json.dumps({f: getattr(self, f) for f in _FIELDS}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str | None) -> Health:
        if not text:
            return cls()
        got = json.loads(text)  # a row written by an older version may have other fields
        return cls(**{k: v for k, v in got.items() if k in _FIELDS})


_FIELDS = tuple(f.name for f in fields(Health))


class RouteState(Protocol):
    #: kept outside this process (SQL, Redis): the router reads it through a short-lived cache
    shared: bool

    def update(self, names: Sequence[str], fn: Callable[[dict[str, Health]], T]) -> T: ...

    def read(self, names: Sequence[str]) -> dict[str, Health]: ...


class MemoryState:
    """This process only."""

    shared = False

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[str, Health] = {}

    def update(self, names: Sequence[str], fn: Callable[[dict[str, Health]], T]) -> T:
        with self._lock:
            return fn({n: self._rows.setdefault(n, Health()) for n in names})

    def read(self, names: Sequence[str]) -> dict[str, Health]:
        with self._lock:
            return {n: Health.from_json(self._rows.setdefault(n, Health()).to_json()) for n in names}


class SQLState:
    """In the ledger's database (SQLite or PostgreSQL), one JSON row per deployment."""

    shared = True

    def __init__(self, store: Callable[[], Any]) -> None:
        self._store = store

    def update(self, names: Sequence[str], fn: Callable[[dict[str, Health]], T]) -> T:
        store = self._store()
        with store.transaction() as tx:
            rows = self._load(tx, names, lock=True)
            before = {n: h.to_json() for n, h in rows.items()}
            out = fn(rows)
            for n, h in rows.items():
                text = h.to_json()
                if text != before[n]:
                    tx.execute(f"UPDATE {TABLE} SET state = ? WHERE deployment = ?", (text, n))
            return out

    def read(self, names: Sequence[str]) -> dict[str, Health]:
        with self._store().transaction() as tx:
            return self._load(tx, names, lock=False)

    @staticmethod
    def _load(tx: Any, names: Sequence[str], lock: bool) -> dict[str, Health]:
        marks = ", ".join("?" for _ in names)
        suffix = " FOR UPDATE" if lock and tx.dialect.name == "postgresql" else ""
        query = f"SELECT deployment, state FROM {TABLE} WHERE deployment IN ({marks}) ORDER BY deployment{suffix}"
        got = dict(tx.execute(query, tuple(names)).fetchall())
        if len(got) < len(names):  # first use of a deployment: its row, then locked like the rest
            for n in names:
                if n not in got:
                    tx.execute(f"INSERT INTO {TABLE} (deployment, state) VALUES (?, '') "
                               "ON CONFLICT (deployment) DO NOTHING", (n,))
            got = dict(tx.execute(query, tuple(names)).fetchall())
        return {n: Health.from_json(got.get(n)) for n in names}


class RedisState:
    """In Redis (``[routing] state = "redis://..."``): one JSON value per deployment, updated
    in a WATCH/MULTI transaction (retried when another process changed it meanwhile)."""

    shared = True

    def __init__(self, url: str, prefix: str = "unillm:route:") -> None:
        self.url, self.prefix = url, prefix
        self._r: Any = None

    def _client(self) -> Any:
        if self._r is None:
            try:
                import redis
            except ImportError as exc:
                raise errors.MissingDependencyError("redis", "redis") from exc
            try:
                self._r = redis.Redis.from_url(self.url, socket_timeout=5.0, socket_connect_timeout=5.0)
            except ValueError as exc:
                raise errors.ConfigError(f"bad Redis URL: {exc}", key="routing.state") from None
        return self._r

    def update(self, names: Sequence[str], fn: Callable[[dict[str, Health]], T]) -> T:
        try:
            return self._update(names, fn)
        except errors.UnillmError:
            raise
        except Exception as exc:  # noqa: BLE001 - redis.RedisError, OSError: no deployment can be chosen
            raise _unavailable(exc) from None

    def _update(self, names: Sequence[str], fn: Callable[[dict[str, Health]], T]) -> T:
        import redis
        keys = [self.prefix + n for n in names]
        with self._client().pipeline() as pipe:
            while True:
                try:
                    pipe.watch(*keys)
                    rows = {n: Health.from_json(v.decode() if v else None)
                            for n, v in zip(names, pipe.mget(keys))}
                    before = {n: h.to_json() for n, h in rows.items()}
                    out = fn(rows)
                    pipe.multi()
                    for n, key in zip(names, keys):
                        text = rows[n].to_json()
                        if text != before[n]:
                            pipe.set(key, text, ex=86400)
                    pipe.execute()
                    return out
                except redis.WatchError:
                    continue

    def read(self, names: Sequence[str]) -> dict[str, Health]:
        try:
            values = self._client().mget([self.prefix + n for n in names])
        except errors.UnillmError:
            raise
        except Exception as exc:  # noqa: BLE001 - redis.RedisError, OSError
            raise _unavailable(exc) from None
        return {n: Health.from_json(v.decode() if v else None) for n, v in zip(names, values)}


def _unavailable(exc: Exception) -> errors.ServerError:
    return errors.ServerError(f"the routing state in Redis cannot be reached ({type(exc).__name__}); "
                              "no deployment can be chosen", retry_after=1.0)
