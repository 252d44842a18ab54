"""``unillm serve``: an OpenAI-compatible gateway over `Client.achat`, with usage ingest,
analytics, API keys (tenancy, budgets, rate limits), a dashboard and an HTML report.

Needs ``pip install 'unillm[server]'`` (Starlette + uvicorn); ``unillm report``
needs only the ledger. Modules: `app` (factory, auth, admin, health), `chat`,
`usage`, `analytics`, `keys`, `ratelimit`, `dashboard`, `svg`, `report`, `wire`,
`limits` (body size, read time, JSON shape), `tenancy` (which tags a caller may set),
`protocol` (uvicorn's httptools or h11 protocol with a header read timeout), `run` (serving on uvicorn).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app"]


def create_app(client: Any, **options: Any) -> Any:
    """The gateway's Starlette app over ``client`` (see `unillm.server.app.create_app`)."""
    from .app import create_app as _create
    return _create(client, **options)
