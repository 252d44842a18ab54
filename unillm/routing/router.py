"""`Router`: which deployment of a model a call goes to, and what each attempt taught it.

Per call: `pick` (skipping deployments cooling down, at their RPM/TPM limit or already
tried by this call; a half-open one admits a single probe), then `done` when the attempt
ends (in-flight released, health and latency updated). See README "Deployments".

A pick reads the shared health through a cache of ``state_ttl`` seconds (one query for every
deployment), and writes nothing when it need not: a pick that counts against an RPM/TPM
limit, claims a half-open probe or is chosen by in-flight counts (``least-busy``) is taken
atomically on fresh rows, with an in-flight lease; any other is counted when it ends, in
the transaction of its ledger row.
"""

from __future__ import annotations

import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from .. import errors
from .spec import DeploymentSpec, RoutingSettings
from .state import Health, RouteState


@dataclass(frozen=True)
class Pick:
    deployment: DeploymentSpec
    strategy: str
    reason: str
    probe: bool = False
    lease: str | None = None   # its in-flight lease in the shared state (None: counted when it ends)
    second: float = 0.0        # the window second its tokens were reserved in
    reserved: int = 0          # tokens reserved against the deployment's TPM (prompt + max_tokens)


Tokens = int | Callable[[], int]


class Router:
    """Deployments grouped by the model name callers use."""

    def __init__(self, deployments: Sequence[DeploymentSpec], settings: RoutingSettings,
                 state: RouteState, clock: Callable[[], float],
                 price: Callable[[DeploymentSpec], Decimal | None] | None = None,
                 rng: random.Random | None = None,
                 on_cooldown: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.settings, self.state, self.clock = settings, state, clock
        self.on_cooldown = on_cooldown  # gets a ``deployment.cooldown`` event when one is taken out
        self.groups: dict[str, list[DeploymentSpec]] = {}
        for d in deployments:
            self.groups.setdefault(d.model, []).append(d)
        self.by_name = {d.label: d for d in deployments}
        self._price = price or (lambda d: None)
        self._rng = rng or random.Random()
        # the shared health as last read or written by this process (not kept for MemoryState)
        self._ttl = settings.state_ttl if getattr(state, "shared", True) else 0.0
        self._rows: dict[str, Health] = {}
        self._read_at: float | None = None
        self._local: Counter[str] = Counter()  # this process's picks in flight without a lease
        self._lock = threading.Lock()

    def routes(self, model: str) -> bool:
        return model in self.groups

    def names(self, model: str) -> list[str]:
        return [d.label for d in self.groups[model]]

    # ── the cached shared state ──
    def stale(self) -> bool:
        """The cached health is due for a read (`refresh`) before the next pick."""
        if not self._ttl:
            return False
        now = self.clock()
        return self._read_at is None or not 0 <= now - self._read_at < self._ttl

    def refresh(self) -> None:
        """Read every deployment's health in one query."""
        if self._ttl:
            now = self.clock()
            self._rows, self._read_at = self.state.read(list(self.by_name)), now

    def _remember(self, rows: dict[str, Health]) -> None:
        if self._ttl:
            self._rows = {**self._rows, **rows}

    # ── choosing ──
    def pick(self, model: str, exclude: frozenset[str] = frozenset(), *, tokens: Tokens = 0,
             ttl: float | None = None, io: bool = True) -> Pick | None:
        """The deployment this call goes to, counted as sent. `RateLimitError` (earliest
        ``retry_after``) when every candidate is at its limit; `ServerError` when every one is
        cooling down or was tried already. ``tokens``: the call's estimate (or a function
        giving it, asked only when a candidate has a TPM limit), reserved against that limit;
        ``ttl``: the call's deadline, its lease's life. ``io=False`` (on an event loop): None
        when the pick needs the shared state; take it again with ``io=True`` off the loop."""
        group = [d for d in self.groups[model] if d.label not in exclude]
        if not group:
            raise errors.ServerError(f"every deployment of {model!r} failed for this call", model=model)
        now = self.clock()
        prefer: Pick | None = None
        if self._ttl:
            if self.stale():
                if not io:
                    return None
                self.refresh()
            prefer, _, _ = self._choose(model, group, self._rows, now, 0)
            if prefer is not None and not self._counted(prefer):
                with self._lock:
                    self._local[prefer.deployment.label] += 1
                return prefer
            if not io:
                return None
        need = (tokens() if callable(tokens) else tokens) if any(d.tpm for d in group) else 0
        life = ttl if ttl is not None and ttl > 0 else self.settings.lease_seconds
        return self._claim(model, group, now, need, life, prefer)

    def _counted(self, pick: Pick) -> bool:
        """Whether ``pick`` must be taken atomically on fresh rows, with a lease."""
        d = pick.deployment
        return pick.probe or d.rpm is not None or d.tpm is not None or pick.strategy == "least-busy"

    def _claim(self, model: str, group: list[DeploymentSpec], now: float, need: int, ttl: float,
               prefer: Pick | None) -> Pick:
        """A pick on fresh rows under the state's lock: its lease, request and tokens counted."""
        keep = prefer if prefer is not None and prefer.strategy == "weighted" else None  # one draw

        def choose(rows: dict[str, Health]) -> Pick:
            pick, waits, cooling = self._choose(model, group, rows, now, need, keep)
            if pick is None:
                if waits and not cooling:
                    raise errors.RateLimitError(
                        f"every deployment of {model!r} is at its rpm/tpm limit", model=model,
                        retry_after=max(min(waits), 0.0))
                soonest = min([*waits, *cooling]) if waits or cooling else None
                raise errors.ServerError(f"every deployment of {model!r} is cooling down", model=model,
                                         retry_after=soonest)
            d = pick.deployment
            h, second, reserved = rows[d.label], float(int(now)), need if d.tpm else 0
            lease = uuid.uuid4().hex[:16]
            h.leases[lease] = [now + ttl, second, float(reserved)]
            h.add("requests", now, 1.0)
            if reserved:
                h.add("tokens", now, float(reserved))
            if pick.probe:
                h.probe_until = now + self.settings.cooldown_seconds
            fresh.update(rows)
            return replace(pick, lease=lease, second=second, reserved=reserved)
        fresh: dict[str, Health] = {}
        out = self.state.update([d.label for d in group], choose)
        self._remember(fresh)
        return out

    def _choose(self, model: str, group: list[DeploymentSpec], rows: dict[str, Health],
                now: float, need: int = 0, keep: Pick | None = None) \
            -> tuple[Pick | None, list[float], list[float]]:
        s = self.settings
        ready: list[tuple[DeploymentSpec, Health, bool]] = []
        waits: list[float] = []    # seconds until a deployment at its limit has room
        cooling: list[float] = []  # seconds until a cooling one may be probed
        for d in group:
            h = rows.get(d.label) or Health()
            h.trim(now, s.cooldown_window)
            if h.cooling_until > now:
                cooling.append(h.cooling_until - now)
                continue
            probe = h.cooling_until > 0
            if probe and h.probe_until > now:
                cooling.append(h.probe_until - now)
                continue
            wait = _limit_wait(d, h, now, need)
            if wait is not None:
                waits.append(wait)
                continue
            ready.append((d, h, probe))
        if not ready:
            return None, waits, cooling
        strategy = s.strategy_for(model)
        probes = [r for r in ready if r[2]]
        if probes:  # a half-open deployment gets its one probe first
            d, _, _ = probes[0]
            return Pick(d, strategy, f"half-open: one probe after {s.cooldown_seconds:g}s cooling", True), [], []
        if keep is not None and any(r[0] is keep.deployment for r in ready):
            return keep, [], []  # the draw made on the cached rows still stands
        d, reason = self._by_strategy(strategy, ready)
        skipped = len(group) - len(ready)
        if skipped:
            reason += f"; {skipped} skipped (cooling or at limit)"
        return Pick(d, strategy, reason), [], []

    def _by_strategy(self, strategy: str, ready: list[tuple[DeploymentSpec, Health, bool]]) \
            -> tuple[DeploymentSpec, str]:
        if strategy == "ordered" or len(ready) == 1:
            return ready[0][0], "first healthy in order" if strategy == "ordered" else "only candidate"
        if strategy == "weighted":
            total = sum(d.weight for d, _, _ in ready)
            d = self._rng.choices([r[0] for r in ready], [r[0].weight for r in ready])[0]
            return d, f"weighted: {d.weight:g}/{total:g}"
        if strategy == "least-busy":
            low = min(h.inflight for _, h, _ in ready)
            d = next(d for d, h, _ in ready if h.inflight == low)
            return d, f"least-busy: {low} in flight"
        if strategy == "latency":
            d, h, _ = min(ready, key=lambda r: -1.0 if r[1].ewma_ms is None else r[1].ewma_ms)
            return d, "latency: untried" if h.ewma_ms is None else f"latency: EWMA {h.ewma_ms:.1f} ms"
        if strategy == "cost":
            priced = [(self._price(d), d) for d, _, _ in ready]
            known = [(p, d) for p, d in priced if p is not None]
            if not known:
                return ready[0][0], "cost: none priced, first in order"
            p, d = min(known, key=lambda x: x[0])
            return d, f"cost: cheapest (${p} per 1k in + 1k out)"
        # usage: furthest from its limits
        d, h, _ = max(ready, key=lambda r: _headroom(r[0], r[1]))
        return d, f"usage: {_headroom(d, h):.0%} headroom"

    def preview(self, model: str) -> dict[str, Any]:
        """What `pick` would choose now, and why; nothing is counted (a weighted pick is one draw)."""
        group = self.groups[model]
        rows = self.state.read([d.label for d in group])
        pick, waits, cooling = self._choose(model, group, rows, self.clock())
        if pick is None:
            why = "every deployment is at its rpm/tpm limit" if waits and not cooling else \
                "every deployment is cooling down"
            return {"model": model, "strategy": self.settings.strategy_for(model), "deployment": None,
                    "reason": why}
        return {"model": model, "strategy": pick.strategy, "deployment": pick.deployment.label,
                "provider": pick.deployment.provider, "model_id": pick.deployment.model_id,
                "reason": pick.reason, "probe": pick.probe}

    # ── learning ──
    def done(self, label: str, *, error: BaseException | None = None, latency_ms: float | None = None,
             tokens: int = 0, release: bool = True, sent: bool = True, pick: Pick | None = None) -> None:
        """An attempt on ``label`` ended: ``error`` None is a success; ``sent=False``: nothing
        was sent (a budget refused it), only its pick is released; ``pick``: the `Pick` it
        held (its lease released, its reserved tokens settled to ``tokens``)."""
        d = self.by_name.get(label)
        if d is None:
            return
        lease = pick.lease if pick is not None else None
        if release and pick is not None and lease is None:
            with self._lock:
                self._local[label] = max(self._local[label] - 1, 0)
            if not sent:
                return  # nothing was counted for it, nothing to write
        now, s = self.clock(), self.settings
        cooled: list[str] = []  # why it was taken out, when this attempt did it

        def apply(rows: dict[str, Health]) -> None:
            cooled.clear()  # (a store may run this again on a retried transaction)
            h = rows[label]
            fresh.update(rows)
            if release and pick is not None and lease is not None:
                h.leases.pop(lease, None)
                h.settle(pick.second, pick.reserved, float(tokens) if sent else 0.0, now)
            elif release and pick is not None and sent:  # counted when it ends
                h.add("requests", now, 1.0)
            if tokens and lease is None:
                h.add("tokens", now, float(tokens))
            if not sent:
                return
            if error is None:
                h.ok += 1
                h.cooling_until = h.probe_until = 0.0
                h.fails = []
                if latency_ms is not None:
                    a = s.latency_alpha
                    h.ewma_ms = latency_ms if h.ewma_ms is None else a * latency_ms + (1 - a) * h.ewma_ms
                return
            h.failed += 1
            if not getattr(error, "retryable", False):
                return
            retry_after = getattr(error, "retry_after", None)
            if isinstance(error, errors.RateLimitError) and retry_after:
                h.cooling_until = max(h.cooling_until, now + float(retry_after))
                h.probe_until = 0.0
                cooled.append("rate_limited")
                return
            if h.cooling_until > 0:  # the half-open probe failed: out again
                h.cooling_until, h.probe_until, h.fails = now + s.cooldown_seconds, 0.0, []
                cooled.append("probe_failed")
                return
            h.fails = [t for t in h.fails if t > now - s.cooldown_window] + [now]
            if len(h.fails) >= s.cooldown_after:
                h.cooling_until, h.fails = now + s.cooldown_seconds, []
                cooled.append("failures")
        fresh: dict[str, Health] = {}
        self.state.update([label], apply)
        self._remember(fresh)
        if cooled and self.on_cooldown is not None:
            self._cooldown(d, cooled[0], error, now)

    def _cooldown(self, d: DeploymentSpec, reason: str, error: BaseException | None, now: float) -> None:
        """The ``deployment.cooldown`` event (to `client.on` and webhooks); never raises."""
        from datetime import datetime, timezone
        seconds = self.settings.cooldown_seconds
        if reason == "rate_limited":
            seconds = float(getattr(error, "retry_after", None) or seconds)
        event = {"event": "deployment.cooldown", "deployment": d.label, "model": d.model, "provider": d.provider,
                 "reason": reason, "error": type(error).__name__ if error is not None else None,
                 "seconds": seconds,
                 "until": datetime.fromtimestamp(now + seconds, timezone.utc).isoformat()}
        try:
            assert self.on_cooldown is not None
            self.on_cooldown(event)
        except Exception:
            import logging
            logging.getLogger("unillm.routing").exception("deployment.cooldown handler failed")

    # ── visibility ──
    def status(self) -> list[dict[str, Any]]:
        """Each deployment: state (healthy, cooling, half-open), in flight, RPM/TPM used,
        latency EWMA, error rate."""
        now, out = self.clock(), []
        rows = self.state.read(list(self.by_name))
        for label, d in self.by_name.items():
            h = rows[label]
            h.trim(now, self.settings.cooldown_window)
            if h.cooling_until > now:
                state = "cooling"
            elif h.cooling_until > 0:
                state = "half-open"
            else:
                state = "healthy"
            calls = h.ok + h.failed
            out.append({"deployment": label, "model": d.model, "provider": d.provider, "model_id": d.model_id,
                        "state": state, "cooling_until": h.cooling_until if state == "cooling" else None,
                        "in_flight": h.inflight + self._local[label], "rpm_used": int(sum(p[1] for p in h.requests)), "rpm": d.rpm,
                        "tpm_used": int(sum(p[1] for p in h.tokens)), "tpm": d.tpm,
                        "latency_ewma_ms": h.ewma_ms, "error_rate": (h.failed / calls) if calls else None})
        return out


def _limit_wait(d: DeploymentSpec, h: Health, now: float, need: int = 0) -> float | None:
    """Seconds until ``d`` has room under its RPM/TPM limits for one more request of ``need``
    tokens; None when it has room now (an empty window always admits one)."""
    wait: float | None = None
    for limit, buckets, more in ((d.rpm, h.requests, 1.0), (d.tpm, h.tokens, float(need))):
        used = sum(p[1] for p in buckets)
        if limit is None or used + more <= limit or used <= 0:
            continue
        t_wait = 0.0
        for at, n in buckets:  # the oldest buckets lapse first
            used -= n
            t_wait = at + 61.0 - now
            if used + more <= limit or used <= 0:
                break
        wait = t_wait if wait is None else max(wait, t_wait)
    return wait


def _headroom(d: DeploymentSpec, h: Health) -> float:
    room = 1.0
    if d.rpm is not None:
        room = min(room, 1 - sum(p[1] for p in h.requests) / d.rpm)
    if d.tpm is not None:
        room = min(room, 1 - sum(p[1] for p in h.tokens) / d.tpm)
    return room


