"""Steps 8-10 and 12: usage (the vendor's, else counted), the cost of the model the vendor
says answered, the ledger row and the budget hold settled in one transaction, then the
structured output parsed."""

from __future__ import annotations

import warnings
from decimal import Decimal
from typing import Any

from pydantic import ValidationError

from .. import errors
from ..budgets.settle import commit
from ..calls import Call, record_for
from ..streaming import (
    ALL_BUCKETS,
    Accumulator,
)
from ..types import ChatResponse, Usage, describe_errors
from .steps import Steps


def parse_structured(call: Call, resp: ChatResponse) -> None:
    message = resp.choices[0].message if resp.choices else None
    if message is None or not message.content:
        return
    try:
        message.parsed = call.request.response_model.model_validate_json(message.content)
    except ValidationError as exc:
        raise errors.ResponseError(
            f"the answer does not match {call.request.response_model.__name__}: {describe_errors(exc)}",
            provider=call.ref.provider, model=call.ref.model, body=message.content) from exc


class Settling(Steps):
    def _finish(self, call: Call, resp: ChatResponse, *, complete: bool = True,
                error: BaseException | None = None, chunks: list[Any] | None = None) -> ChatResponse:
        """Usage (counted when the vendor gave none), cost, savings, ledger row."""
        resp.provider, resp.requested_model, resp.rule = call.ref.provider, call.requested_model, call.rule
        resp.sent_model = call.ref.model
        resp.capped = call.budget_cap
        if resp.usage is None:
            resp.usage = self._count_usage(call, resp)
        if resp.usage.problem:
            self._bad_usage(call, resp, error)
        price = call.price if not resp.model or resp.model == call.ref.model else self._reported_price(call, resp)
        cost = resp.cost = price.cost(resp.usage) if price is not None else None
        saved, reason = self._rule_saving(call, resp.usage, cost)
        # a stream that opened was accepted by the vendor, which bills its prompt however far it
        # got: an incomplete one is settled as partial (input counted, output as received)
        status = ("ok" if cost is not None else "unpriced") if complete else "partial"
        resp.cache_status = call.cache_status = self._cache_put(call, resp, complete, chunks)
        resp.dropped_params = call.request.dropped
        if self._recording or self._obs.rows:
            rec = record_for(call, status, usage=resp.usage, cost=cost, error=error, saved=saved,
                             saved_reason=reason, response=resp, log_content=self.settings.log_content,
                             model=resp.model or call.ref.model)
            try:
                self._record(rec, call, cost=cost, tokens=resp.usage.total_tokens, resp=resp)
            except errors.LedgerError as err:
                err.response = resp  # paid for and received: the caller may still use it
                raise
            resp.ledger_id = rec.id if self._recording else None
        elif self._obs.tracer:  # spans and metrics only: no row is built for them
            self._obs.finished(call, status, resp, cost, error, saved)
        self._route_done(call, None, resp.usage.total_tokens)  # (no ledger: its row did not release it)
        if call.request.response_model is not None and complete:
            parse_structured(call, resp)
        return resp

    def _reported_price(self, call: Call, resp: ChatResponse) -> Any:
        """The price of the model the vendor says answered. A dated snapshot of the model sent
        (``gpt-4o`` answered as ``gpt-4o-2024-08-06``), or a name the price book resolves to the
        same entry, is the model sent, priced by its own entry when it has one; another model is
        priced as itself and flagged (``resp.model_mismatch``, a `ModelMismatchWarning`)."""
        book, provider = self.pricebook, call.ref.provider
        reported = book.find(provider, resp.model)
        if reported is book.find(provider, call.ref.model):
            return call.price
        if not resp.model.startswith(call.ref.model + "-"):  # not a snapshot of the model sent
            resp.model_mismatch = True
            priced_as = (f"priced as {resp.model!r}" if reported is not None else
                         "which has no price; the call is priced as the model sent")
            warnings.warn(f"{provider} answered {call.ref.model!r} with {resp.model!r}, {priced_as}",
                          errors.ModelMismatchWarning, stacklevel=4)
        return call.price if reported is None else book.price(provider, resp.model, call.at)

    def _bad_usage(self, call: Call, resp: ChatResponse, cause: BaseException | None) -> None:
        """Impossible figures from the vendor: an ``error`` row keeping them as reported (no
        cost: they cannot be priced), then `UsageError` carrying the answer, which was paid for."""
        usage = resp.usage
        err = errors.UsageError(usage.problem or "impossible usage", usage=usage, response=resp,  # type: ignore[union-attr]
                                provider=call.ref.provider, model=resp.model or call.ref.model)
        if self._recording:
            rec = record_for(call, "error", usage=usage, error=err, response=resp,
                             log_content=self.settings.log_content, model=resp.model or call.ref.model)
            self._record(rec, call)
            resp.ledger_id = rec.id
        if cause is not None:
            raise err from cause
        raise err

    def _finish_stream(self, call: Call, acc: Accumulator, error: BaseException | None) -> ChatResponse:
        """A stream's end. Complete only when the vendor said so (a finish reason) and nothing
        broke; else partial, with the vendor's figures for every bucket it had reported and
        only the rest counted."""
        if acc.first_at is not None:
            call.ttft_ms = (acc.first_at - call.attempt_t0) * 1000.0  # of the attempt that answered
        complete = error is None and acc.finish_reason is not None
        resp = acc.response()
        if resp.usage is None:
            reported, buckets = acc.reported()
            if reported is not None and buckets:
                resp.usage = reported if buckets >= ALL_BUCKETS else \
                    self._count_usage(call, resp, reported, buckets)
        return self._finish(call, resp, complete=complete, error=error, chunks=acc.chunks)

    def _count_usage(self, call: Call, resp: ChatResponse, reported: Usage | None = None,
                     buckets: frozenset[str] = frozenset()) -> Usage:
        """Usage counted locally, keeping the vendor's figures for the ``buckets`` it reported."""
        from ..tokens import count_usage
        msg = resp.choices[0].message if resp.choices else None
        text = (msg.content or "") if msg else ""
        if msg and msg.tool_calls:
            text += "".join(tc.function.name + tc.function.arguments for tc in msg.tool_calls)
        return count_usage(call.request, text, call.ref.model, self.providers[call.ref.provider],
                           reported=reported, buckets=buckets)

    def _rule_saving(self, call: Call, usage: Usage, cost: Any) -> tuple[Decimal | None, str | None]:
        """A swap's saving: the actual usage priced at the original model minus what was paid."""
        if call.swapped_from is None or cost is None:
            return None, None
        try:
            original = self.pricebook.price(call.swapped_from.provider, call.swapped_from.model, call.at)
        except errors.MissingPriceError:
            return None, None
        return original.cost(usage).total_usd - cost.total_usd, "rule"

    def _record(self, rec: Any, call: Call | None = None, cost: Any = None, tokens: int = 0,
                resp: ChatResponse | None = None, traced: Call | None = None) -> None:
        """Step 10: the ledger row and the call's budget hold (settled into spend, or released
        when nothing was spent) commit in one transaction; durable when this returns. Then
        the row goes to callbacks, spans and logs (`unillm.telemetry`), if any."""
        hold = call.reservation if call is not None else None
        if self._recording:
            if call is not None:
                call.reservation = None
            if call is not None and call.route_held and rec.status not in ("in_flight", "error", "unknown",
                                                                             "budget_denied"):
                with self.ledger.store.transaction():  # the row and the deployment's health: one commit
                    commit(self.ledger, self.budgets, rec, hold, cost.total_usd if cost else None, tokens)
                    self._route_done(call, None, tokens)
            else:
                commit(self.ledger, self.budgets, rec, hold, cost.total_usd if cost else None, tokens)
        if self._obs.active:
            self._obs.recorded(rec, call or traced, resp, hold is not None)
