"""Step 7's first half: which ``[[deployments]]`` entry a call goes to (`unillm.routing`
picks, counts in flight, releases), and the next healthy deployment after a failure."""

from __future__ import annotations

from .. import errors
from ..calls import Call, record_for
from ..profiles import ModelRef
from .steps import Steps


class Routing(Steps):
    def _routed_name(self, model: str) -> str | None:
        """The ``[[deployments]]`` model name ``model`` leads to (aliases followed), if any."""
        if self._router is None:
            return None
        seen = 0
        while model in self.settings.aliases and seen < 64:
            model, seen = self.settings.aliases[model], seen + 1
        return model if self._router.routes(model) else None

    def _resolve(self, model: str) -> ModelRef:
        name = self._routed_name(model)
        if name is None or self._router is None:
            return self._resolver.resolve(model)
        d = self._router.groups[name][0]
        return ModelRef(d.provider, d.vendor_model, self.providers[d.provider].adapter)

    def _route(self, call: Call, name: str | None, asynchronous: bool = False) -> None:
        """Send ``call`` to the deployment of ``name`` the strategy picks (counted in flight).
        On the event loop a pick that needs the shared state is left to `_route_late`."""
        if name is None or self._router is None:
            return
        try:
            pick = self._router.pick(name, call.route_tried, tokens=lambda: self._route_tokens(call),
                                     ttl=self._deadline_of(call), io=not asynchronous)
        except errors.ProviderError as err:
            self._record(record_for(call, "error", error=err))
            raise
        if pick is None:
            call.route = name
            return
        d = pick.deployment
        call.route, call.deployment, call.route_held = name, d.label, pick
        call.route_tried = call.route_tried | {d.label}
        call.ref = ModelRef(d.provider, d.vendor_model, self.providers[d.provider].adapter)
        call.adapter = self._adapter(d.provider)

    def _route_late(self, call: Call) -> None:
        """`achat`: the pick `_prepare` left (it reads or writes the shared state), on the
        store's threads (`_priced` prices the deployment it chose)."""
        self._route(call, call.route)

    def _route_tokens(self, call: Call) -> int:
        """What a pick reserves against a deployment's TPM: the prompt plus its max_tokens."""
        return self._count(call)[0] + (call.request.max_tokens or 0)

    def _route_done(self, call: Call, err: BaseException | None, tokens: int = 0, sent: bool = True) -> None:
        if self._router is None or call.deployment is None or not call.route_held:
            return
        pick, call.route_held = call.route_held, False  # released once
        latency = call.ttft_ms if call.ttft_ms is not None else call.elapsed_ms()
        self._router.done(call.deployment, error=err, latency_ms=latency if err is None else None,
                          tokens=tokens, sent=sent and call.attempt > 0, pick=pick)

    def _next_deployment(self, call: Call) -> Call | None:
        """The next healthy deployment of the same model, before any fallback model."""
        if self._router is None or call.route is None:
            return None
        try:
            pick = self._router.pick(call.route, call.route_tried, tokens=lambda: self._route_tokens(call),
                                     ttl=self._time_left(call))
        except errors.ProviderError:
            return None
        if pick is None:
            return None
        d = pick.deployment
        ref = ModelRef(d.provider, d.vendor_model, self.providers[d.provider].adapter)
        nxt = call.retarget(ref, self._adapter(d.provider), self._price_of(call, ref), call.deployment or str(call.ref))
        nxt.route, nxt.deployment, nxt.route_tried = call.route, d.label, call.route_tried | {d.label}
        nxt.route_held = pick
        nxt.remaining = call.remaining
        return self._admit(nxt) if self.budgets else nxt

    def _max_retries(self, call: Call) -> int:
        """Retries on this deployment: none while the model has another one to try."""
        if self._router is not None and call.route is not None and \
                len(self._router.groups[call.route]) > len(call.route_tried):
            return 0
        return call.adapter.settings.max_retries
