"""`Steps`: what the pipeline's step classes share, the base of each.

`unillm.client.Client` is one class made of its steps (`Routing`, `Admission`, `Attempts`,
`Caching`, `Settling`, each in its own module of this package) plus the public API and steps
1-4 it keeps itself. A step calls another through ``self``; this class declares, for the type
checker, the client's state the steps read and the methods they call across modules, so each
module can be read (and checked) on its own.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from datetime import datetime

    from ..adapters.base import Adapter
    from ..budgets import Budgets
    from ..cache import CacheBackend
    from ..calls import Call
    from ..config import Settings
    from ..ledger import Ledger
    from ..pricing import Price, PriceBook
    from ..profiles import ModelRef, ProviderSettings, Resolver
    from ..retry import Retrier
    from ..routing import Router
    from ..streaming import Accumulator
    from ..telemetry import Observer
    from ..types import ChatResponse

T = TypeVar("T")


class Steps:
    settings: Settings
    providers: dict[str, ProviderSettings]
    budgets: Budgets
    _clock: Callable[[], datetime]
    _resolver: Resolver
    _retrier: Retrier
    _router: Router | None
    _fallbacks: dict[str, list[str]]
    _recording: bool   # a ledger: rows are built and written
    _obs: Observer     # events, spans, JSON logs

    if TYPE_CHECKING:  # defined by Client or by another step
        @property
        def pricebook(self) -> PriceBook: ...
        @property
        def ledger(self) -> Ledger: ...
        @property
        def cache(self) -> CacheBackend: ...
        def _io(self, step: Callable[..., T], *args: Any) -> Awaitable[T]: ...
        def _adapter(self, provider: str) -> Adapter: ...
        def _price_of(self, call: Call, ref: ModelRef) -> Price | None: ...
        # routing
        def _routed_name(self, model: str) -> str | None: ...
        def _resolve(self, model: str) -> ModelRef: ...
        def _route(self, call: Call, name: str | None, asynchronous: bool = False) -> None: ...
        def _route_done(self, call: Call, err: BaseException | None, tokens: int = 0,
                        sent: bool = True) -> None: ...
        def _next_deployment(self, call: Call) -> Call | None: ...
        def _max_retries(self, call: Call) -> int: ...
        # admission
        def _admit(self, call: Call) -> Call: ...
        def _count(self, call: Call) -> tuple[int, str]: ...
        def _readmit(self, call: Call) -> None: ...
        # attempts
        def _deadline_of(self, call: Call) -> float | None: ...
        def _time_left(self, call: Call) -> float | None: ...
        def _next_in_chain(self, call: Call) -> Call | None: ...
        # caching
        def _cache_put(self, call: Call, resp: ChatResponse, complete: bool,
                       chunks: list[Any] | None) -> str | None: ...
        # settling
        def _finish(self, call: Call, resp: ChatResponse, *, complete: bool = True,
                    error: BaseException | None = None, chunks: list[Any] | None = None) -> ChatResponse: ...
        def _finish_stream(self, call: Call, acc: Accumulator, error: BaseException | None) -> ChatResponse: ...
        def _record(self, rec: Any, call: Call | None = None, cost: Any = None, tokens: int = 0,
                    resp: ChatResponse | None = None, traced: Call | None = None) -> None: ...
