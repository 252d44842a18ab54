"""The serving process's start-up heap, out of the cyclic garbage collector's way.

A gateway process holds a few hundred thousand objects built once (the vendor SDKs' modules
and pydantic models, the app, the config) and never freed. CPython's full (generation 2)
collection walks all of them: measured with ``bench/bench_gateway_load.py`` at 50 clients,
one took 100-670 ms, and for that time every request in flight waited on the event loop;
a few per minute made the latency tail. `FreezeHeap` calls `gc.freeze` (as gunicorn's and
Instagram's servers do) once start-up is complete and once more after the first requests
(the first call imports the vendor SDK): what exists then is moved to the permanent
generation, which collections skip. A full collection after that walks only what requests
made since (~2 ms measured), and freed objects are still freed by reference counting.

Only the process `unillm.server.run.serve` runs (``unillm serve``) does this: `gc.freeze`
is process-wide, so an app served inside another program (a test, an embedding
application) keeps that program's collector as it is.
"""

from __future__ import annotations

import gc
from typing import Any

__all__ = ["WARM_REQUESTS", "FreezeHeap", "freeze"]

#: requests served before the second freeze (the first loads the vendor SDK and its models)
WARM_REQUESTS = 20


def freeze() -> None:
    """Collect what is garbage now, then move every object left out of the collector's walks."""
    gc.collect()
    gc.freeze()


class FreezeHeap:
    """ASGI wrapper: `freeze` once ``lifespan.startup.complete`` is sent and once after
    ``warm_requests`` HTTP requests have been answered."""

    def __init__(self, app: Any, *, warm_requests: int = WARM_REQUESTS) -> None:
        self.app = app
        self.left = warm_requests   # HTTP requests to answer before the second freeze
        self.frozen = 0             # how many times this wrapper froze the heap

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            async def sent(message: dict[str, Any]) -> None:
                if message["type"] == "lifespan.startup.complete":
                    self._freeze()
                await send(message)
            await self.app(scope, receive, sent)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http" and self.left > 0:
                self.left -= 1
                if self.left == 0:
                    self._freeze()

    def _freeze(self) -> None:
        freeze()
        self.frozen += 1
