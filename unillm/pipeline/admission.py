"""Steps 4 and 6: the prompt counted once per call, the worst case it may cost, and the hold
of that worst case in every matching budget (written ahead), or a refusal, a downgrade or
the next fallback model that fits."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import partial
from typing import Any

from .. import errors
from ..budgets.flight import in_flight
from ..budgets.manager import Worst
from ..calls import Call, record_for
from ..types import Usage
from .steps import Steps

#: output cap injected under a budget when the request has none and the price book does not
#: know the model's maximum output (its `max_output_tokens`): a cap every vendor accepts, so the
#: hold stays a true bound of what the vendor can bill; the response says so (``capped``)
DEFAULT_MODEL_MAX = 4096

#: `unillm.tokens.count_prompt` once a prompt has been counted: `unillm.tokens` (and tiktoken)
#: load on first use, not with the client, and an import statement per call cost 17k instructions
_count_prompt: Callable[..., tuple[int, str]] | None = None


def _load_count_prompt() -> Callable[..., tuple[int, str]]:
    global _count_prompt
    from ..tokens import count_prompt
    _count_prompt = count_prompt
    return count_prompt


class Admission(Steps):
    def _admit(self, call: Call) -> Call:
        """Step 6: hold the call's worst case in every matching budget, or refuse it.

        A refusal may downgrade (``on_exceed = "downgrade:MODEL"``) or move on to a
        fallback model that fits; the call that was admitted is returned.
        """
        deadline = self._deadline_of(call)
        while True:
            adm = self._hold(call, deadline)
            if adm.denied is None:
                break
            spec = adm.denied_spec
            if spec is not None and spec.downgrade_to and call.rule != f"budget:{spec.name}" \
                    and call.kind == "chat":  # a chat model cannot answer an embedding call
                self._swap(call, spec.downgrade_to, rule=f"budget:{spec.name}")
                continue
            self._route_done(call, None, sent=False)  # refused before sending: its pick is released
            self._record(record_for(call, "budget_denied", error=adm.denied), traced=call)
            nxt = self._next_in_chain(call)  # a fallback model may fit where this one did not
            if nxt is None:
                raise adm.denied
            call = nxt
        call.reservation = adm.hold
        if adm.hold is not None and call.request.max_tokens is None and call.kind == "chat":
            call.request = call.request.model_copy(update={"max_tokens": adm.hold.cap})
            call.capped = True
            known = call.price.max_output_tokens if call.price is not None else None
            call.budget_cap = adm.hold.cap if known is None or adm.hold.cap < known else None
        return call

    def _worst(self, call: Call) -> Worst:
        if call.kind == "embed":
            from ..embeddings.pipeline import worst
            return worst(self, call)
        tokens, source = self._count(call)
        model_max = (call.price.max_output_tokens if call.price is not None else None) or DEFAULT_MODEL_MAX
        return Worst.of(call.price, tokens, exact=source == "tiktoken", max_tokens=call.request.max_tokens,
                        model_max=model_max)

    def _swap(self, call: Call, model: str, rule: str) -> None:
        ref = self._resolver.resolve(model)
        call.swapped_from = call.swapped_from or call.ref
        call.ref, call.adapter, call.rule = ref, self._adapter(ref.provider), rule
        call.price = self._price_of(call, ref)

    def _prompt_tokens(self, call: Call) -> int:
        return self._count(call)[0]

    def _count(self, call: Call) -> tuple[int, str]:
        """The prompt's ``(tokens, source)``, counted once per call (rules, budget, estimates
        share it) until a rule, downgrade or fallback changes the messages or the model."""
        req, ref, memo = call.request, call.ref, call.prompt
        if memo is not None and memo[0] is req.messages and memo[1] is req.tools and memo[2] == ref:
            return memo[3]  # type: ignore[no-any-return]
        got = (_count_prompt or _load_count_prompt())(req, ref.model, self.providers[ref.provider])
        call.prompt = (req.messages, req.tools, ref, got)
        return got

    def _estimated_cost(self, call: Call) -> Decimal | None:
        """Worst case: the prompt plus the output cap, at the model's prices."""
        try:
            price = self.pricebook.price(call.ref.provider, call.ref.model, call.at)
        except errors.MissingPriceError:
            return None
        usage = Usage(input_tokens=self._prompt_tokens(call), output_tokens=call.request.max_tokens or 0)
        return price.cost(usage).total_usd

    def _readmit(self, call: Call) -> None:
        """A hold for the retry of an attempt counted at its worst case, or `BudgetExceededError`
        ending the call (recorded as ``budget_denied`` by `_fallback`)."""
        adm = self._hold(call, self._time_left(call))
        if adm.denied is not None:
            raise adm.denied
        call.reservation = adm.hold

    def _hold(self, call: Call, deadline: float | None) -> Any:
        """Admission to every matching budget (the alerts it raises emitted); the `Admission`."""
        worst = self._worst(call)  # (counting may load an encoding: the lease starts after it)
        # flight: the write-ahead row. A process killed mid-call leaves it, and it settles
        # as `unknown` at the hold's worst case (budgets.store.take_expired)
        adm = self.budgets.admit(call.tags, worst, self._clock(), deadline=deadline, flight=partial(in_flight, call))
        for event in adm.events:
            self.budgets.alerts.emit(event)
        return adm
