"""``POST /admin/rules/test``: a chat request in, what the rules would do with it out.

The answer is `Client.explain` (every rule, every condition held or failed, the resulting
request) plus ``estimate``: the original and the resulting request priced with the price
book in force (bundled book, the user's price file, ``PUT /admin/prices`` overrides), and
the saving between them. Nothing is sent or recorded.

An estimate is, per request: the prompt counted with unillm's token counter
(`unillm.tokens.count_prompt`, for that request's model; ``prompt_tokens_source`` says
``tiktoken`` or ``estimate``) plus an output of ``max_tokens`` when the request has one,
else the model's documented ``max_output_tokens``, else `DEFAULT_OUTPUT_CAP` (4096), the cap
a budget holds for such a call; ``output_tokens_from`` says which. It is a worst case, not a
prediction. A rule in ``shadow`` mode changes nothing (the result is the original); a
``deny`` sends nothing (the result costs 0).
"""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .. import errors
from .wire import HTTPError

if TYPE_CHECKING:
    from .app import Gateway

#: the output a request without ``max_tokens`` is estimated at, when its model has no
#: documented ``max_output_tokens`` (the same default cap budgets hold for)
DEFAULT_OUTPUT_CAP = 4096


def _priced(client: Any, model: str, messages: Any, params: dict[str, Any], at: datetime) -> dict[str, Any]:
    """One request's worst-case estimate (``cost_usd`` None when its model is unpriced)."""
    from ..tokens import count_prompt
    from ..types import Usage, build_request
    ref = client.resolve(model)
    request = build_request(model, messages, params, drop_params=client.settings.drop_params)
    tokens, source = count_prompt(request, ref.model, client.providers.get(ref.provider))
    out: dict[str, Any] = {"model": f"{ref.provider}/{ref.model}", "prompt_tokens": tokens,
                           "prompt_tokens_source": source}
    try:
        price = client.pricebook.price(ref.provider, ref.model, at)
    except errors.MissingPriceError:
        price = None
    if request.max_tokens is not None:
        cap, origin = request.max_tokens, "max_tokens"
    elif price is not None and price.max_output_tokens:
        cap, origin = price.max_output_tokens, "model_max_output_tokens"
    else:
        cap, origin = DEFAULT_OUTPUT_CAP, "default_cap"
    out |= {"output_tokens": cap, "output_tokens_from": origin, "cost_usd": None, "price_source": None}
    if price is not None:
        out["cost_usd"] = str(price.cost(Usage(input_tokens=tokens, output_tokens=cap)).total_usd)
        out["price_source"] = price.source
    return out


def estimate(client: Any, answer: dict[str, Any], model: str, messages: Any, params: dict[str, Any],
             at: datetime) -> dict[str, Any]:
    """``{"original", "result", "saving_usd"}`` for an `explain` ``answer`` of this request."""
    original = _priced(client, model, messages, params, at)
    decision, changes = answer.get("decision") or {}, answer.get("changes") or {}
    if decision.get("deny") is not None and decision.get("mode") != "shadow":
        result: dict[str, Any] = {"denied": True, "cost_usd": "0"}
    elif decision.get("mode") == "shadow" or not changes:
        result = original
    else:
        changed = dict(params)
        if changes.get("max_tokens") is not None:
            changed["max_tokens"] = changes["max_tokens"]
        result = _priced(client, changes.get("model", model), messages, changed, at)
    saving = None
    if original["cost_usd"] is not None and result["cost_usd"] is not None:
        saving = str(Decimal(original["cost_usd"]) - Decimal(result["cost_usd"]))
    return {"original": original, "result": result, "saving_usd": saving}


def parse(gw: Gateway, body: Any) -> tuple[str, list[Any], dict[str, Any], bool, dict[str, str]]:
    """(model, messages, params, stream, tags) of a test body: a chat body, plus ``tags``
    (optional object of strings) standing for the caller's tags."""
    from .chat import to_call
    if not isinstance(body, dict):
        raise HTTPError(400, "the request body must be a JSON object")
    tags = body.pop("tags", None) or {}
    if not isinstance(tags, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items()):
        raise HTTPError(400, "tags must be an object of strings", param="tags")
    model, messages, params, stream, _, _ = to_call(body)
    gw.check_model(model)
    return model, messages, params, stream, tags


def answer(gw: Gateway, model: str, messages: list[Any], params: dict[str, Any], stream: bool,
           tags: dict[str, str]) -> dict[str, Any]:
    """`Client.explain` plus ``estimate`` (blocking: the token count and the price book)."""
    at = datetime.now(timezone.utc)
    client = gw.client
    out: dict[str, Any] = client.explain(model, messages, stream=stream, tags=tags, at=at, **params)
    out["estimate"] = estimate(client, out, model, messages, params, at)
    return out
