"""``POST /admin/provider-keys/{provider}/test``: does the provider's key work?

One cheap call: a 1-token chat to the provider's cheapest priced chat model, through the
gateway's `Client` (so it is recorded and priced like any call, tagged
``purpose=provider-key-test``). The answer says ok or the error, never the key.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from .. import errors
from .wire import HTTPError, json_response


def cheapest_model(client: Any, provider: str) -> str | None:
    """The provider's priced model with the lowest input + output price per token."""
    best: tuple[Decimal, str] | None = None
    for pm in client.pricebook.models():
        if pm.provider != provider or pm.name == "*" or "*" in pm.name:
            continue
        price = pm.current
        rate = sum((getattr(price, f, None) or Decimal(0) for f in ("input", "output")), Decimal(0))
        if best is None or (rate, pm.name) < best:
            best = (rate, pm.name)
    return best[1] if best else None


async def test_key(request: Request) -> Response:
    gw = request.app.state.gateway
    gw.authenticate(request, admin=True)
    provider = request.path_params["provider"]
    client = gw.client
    if provider not in client.providers:
        raise HTTPError(404, f"unknown provider {provider!r}", code="provider_not_found", param="provider")
    sealed = await asyncio.to_thread(client.sealed_key, provider)
    if sealed:
        gw.scrub.add(sealed)
    source = "sealed" if sealed else ("config" if client.providers[provider].resolved_api_key() else None)
    if source is None:
        return json_response({"provider": provider, "ok": False, "key": None,
                              "error": f"no key for {provider}: none in the config or environment, "
                                       f"none sealed (`unillm secrets set {provider}`)"})
    model = cheapest_model(client, provider)
    if model is None:
        raise HTTPError(404, f"no priced model of {provider!r} to test its key with",
                        code="model_not_priced")
    try:
        resp = await client.achat(f"{provider}/{model}", [{"role": "user", "content": "ping"}],
                                  max_tokens=1, cache=False, tags={"purpose": "provider-key-test"})
    except errors.UnillmError as exc:
        return json_response({"provider": provider, "ok": False, "key": source, "model": model,
                              "error": gw.scrub(f"{type(exc).__name__}: {exc}")})
    if resp.provider != provider:
        return json_response({"provider": provider, "ok": False, "key": source, "model": model,
                              "error": f"a rule sent the test call to {resp.provider}; the key was not tried"})
    return json_response({"provider": provider, "ok": True, "key": source, "model": model})
