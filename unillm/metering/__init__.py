"""`observe()`: meter every outbound API call an application makes, in one line.

::

    handle = unillm.observe()                       # the default client's ledger and budgets
    openai.OpenAI().chat.completions.create(...)    # priced and recorded, no track() call
    httpx.post("https://api.stripe.com/v1/charges", ...)   # an [[apis]] entry: per_call
    handle.stop()

Requests to an LLM vendor's chat endpoint (its own host, or any profile's ``base_url``) are
priced from the usage in their response, JSON or SSE, with the converters `Client.chat`
uses; requests matching an ``[[apis]]`` entry (``unillm.toml`` or ``apis=``) by its units;
every other request goes out untouched (``record_unknown=True`` records a vendor request
whose response carries no usage, unpriced). Each row carries the `section` and the
client's tags (plus ``tags=``). With a budget in scope a request that would overshoot is
refused before it leaves (`BudgetExceededError`; the openai and anthropic SDKs, which
would retry it as a connection error, get a non-retryable 402 carrying the same message).
A client with ``ledger = "off"`` keeps no row (and has no budget), so nothing is metered
for it: every request passes as if the hooks were out.
See `unillm.metering.hooks` for where each library is hooked.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any

from .apis import ApiSpec

__all__ = ["ApiSpec", "Observer", "observe"]

_LOCK = threading.Lock()


class Observer:
    """The handle `observe()` returns: ``.stop()`` puts every library back as it was."""

    def __init__(self, meter: Any) -> None:
        self.meter = meter

    @property
    def active(self) -> bool:
        from . import hooks
        return hooks.installed() and hooks._METER[0] is self.meter

    def stop(self) -> None:
        from . import hooks
        with _LOCK:
            if hooks._METER[0] is self.meter:
                hooks.uninstall()

    def __enter__(self) -> Observer:  # noqa: PYI034 - final class
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


_CURRENT: list[Observer | None] = [None]


def observe(client: Any = None, *, apis: Iterable[ApiSpec | Mapping[str, Any]] | None = None,
            record_unknown: bool = False, tags: Mapping[str, str] | None = None) -> Observer:
    """Start metering (see the module docstring); idempotent: calling it again with the same
    arguments returns the running handle, with others it replaces what is metered."""
    from ..tracking import _default_client
    from . import hooks
    from .meter import Meter
    client = client or _default_client()
    specs = list(client.settings.apis) + [parse_api(a, i) for i, a in enumerate(apis or ())]
    with _LOCK:
        current = _CURRENT[0]
        if current is not None and current.active and current.meter.client is client \
                and current.meter.apis == specs and current.meter.record_unknown == record_unknown \
                and current.meter.tags == dict(tags or {}):
            return current
        observer = Observer(Meter(client, specs, record_unknown=record_unknown, tags=tags))
        hooks.install(observer.meter)
        _CURRENT[0] = observer
        return observer


def parse_api(entry: ApiSpec | Mapping[str, Any], index: int) -> ApiSpec:
    """One ``apis=`` entry, checked as ``[[apis]]`` is (one ConfigError naming the key)."""
    if isinstance(entry, ApiSpec):
        return entry
    from pydantic import ValidationError

    from .._toml import combine_errors, config_errors
    try:
        return ApiSpec.model_validate(entry)
    except ValidationError as exc:
        raise combine_errors(config_errors(exc, file="observe(apis=...)", model=ApiSpec,
                                           label=lambda loc: f"apis[{index}]." + ".".join(map(str, loc))),
                             file="observe(apis=...)") from None
