"""Routing state shared by separate routers (as separate processes would be) through SQLite,
PostgreSQL and Redis: cooldowns and RPM limits seen by all."""

from __future__ import annotations

import pytest

from tests.servers import postgres_server, postgres_url, redis_server, redis_url  # noqa: F401
from unillm import errors
from unillm.ledger import open_store
from unillm.routing import DeploymentSpec, RedisState, Router, RoutingSettings, SQLState


class Clock:
    now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgresql", "redis"])
def states(request, tmp_path):
    if request.param == "redis":
        import uuid
        url = request.getfixturevalue("redis_url")
        prefix = f"t{uuid.uuid4().hex}:"
        yield RedisState(url, prefix), RedisState(url, prefix)
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/l.db"
    else:
        from tests.servers import create_database
        url = create_database(request.getfixturevalue("postgres_url"))
    a, b = open_store(url), open_store(url)
    yield SQLState(lambda: a), SQLState(lambda: b)
    a.close()
    b.close()


def _routers(states, clock):
    deps = [DeploymentSpec(model="m", provider="east", rpm=4), DeploymentSpec(model="m", provider="west", rpm=2)]
    settings = RoutingSettings(strategy="ordered", cooldown_after=2, cooldown_seconds=30)
    return [Router(deps, settings, s, clock) for s in states]


def test_cooldown_and_rpm_shared(states):
    clock = Clock()
    one, two = _routers(states, clock)
    for r in (one, two):  # one failure each: two within the window trips the cooldown
        pick = r.pick("m")
        assert pick.deployment.label == "east/m"
        r.done("east/m", error=errors.ServerError("down"))
    assert two.pick("m").deployment.label == "west/m"  # the other router sees it cooling
    assert one.pick("m").deployment.label == "west/m"
    with pytest.raises(errors.ServerError):  # west at 2 rpm; east cooling
        two.pick("m")
    clock.now += 31  # half-open: one probe, for one router only
    assert one.pick("m").probe
    with pytest.raises(errors.ServerError):
        two.pick("m")
    one.done("east/m", latency_ms=10.0)
    assert two.pick("m").deployment.label == "east/m"  # healthy again; its 4th request this minute
    with pytest.raises(errors.RateLimitError) as exc:  # east 4/4 (two failures, the probe, that one)
        two.pick("m")
    assert 0 < exc.value.retry_after <= 61
    status = {s["deployment"]: s for s in one.status()}
    assert status["east/m"]["state"] == "healthy" and status["east/m"]["rpm_used"] == 4
