"""``GET/PUT /admin/prices/{provider}/{model}``: price overrides (`unillm.price_overrides`).

``GET`` answers the price in force now (with where it comes from) and the model's overrides;
``PUT`` takes one pricing.toml entry as JSON (prices as decimal strings, ``since`` a day) and
stores it (one audit row, `unillm.server.audit`); this process prices the next call with
it, other workers within 5 seconds.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .. import errors
from ..price_overrides import PriceOverrides
from .wire import HTTPError, json_response


def _price_json(price: Any) -> dict[str, Any]:
    from ..price_files import PRICE_KEYS
    out: dict[str, Any] = {k: str(getattr(price, k)) for k in PRICE_KEYS if getattr(price, k, None) is not None}
    out["since"] = price.since.isoformat() if price.since else None
    out["source"] = price.source
    return out


async def endpoint(request: Request) -> Response:
    gw = request.app.state.gateway
    actor = gw.authenticate(request, admin=True)
    provider, model = request.path_params["provider"], request.path_params["model"]
    client = gw.client
    if provider not in client.providers:
        raise HTTPError(404, f"unknown provider {provider!r}", code="provider_not_found", param="provider")
    store = client.ledger.store
    if request.method == "PUT":
        from .chat import read_json
        body = await read_json(request)
        try:
            saved = await asyncio.to_thread(lambda: PriceOverrides(store).put(provider, model, body, actor=actor.id))
        except errors.ConfigError as exc:
            raise HTTPError(400, str(exc), code="invalid_price", param=exc.key) from None
        client._overrides.expire()  # the next call here is priced with it
        return json_response({"object": "price_override", **saved})
    overrides = await asyncio.to_thread(PriceOverrides(store).rows, provider, model)
    try:
        current: dict[str, Any] | None = _price_json(client.pricebook.price(provider, model))
    except errors.MissingPriceError:
        current = None
    return json_response({"provider": provider, "model": model, "current": current, "overrides": overrides})
