"""`open_limiter`: the rate limiter ``[server] ratelimit`` names.

Apart from `ratelimit` (the in-process limiter and the protocol) so that `ratelimit_shared`
can import that and this module can import both, without a circle.
"""

from __future__ import annotations

from typing import Any

from .. import errors
from .ratelimit import Limiter, RateLimiter
from .ratelimit_shared import RedisRateLimiter, SQLRateLimiter


def open_limiter(client: Any) -> Limiter:
    """The limiter ``[server] ratelimit`` names for ``client`` (default: its ledger's database)."""
    url = client.settings.server.ratelimit
    store = client.ledger.store
    if url is None:
        if not hasattr(store, "transaction") or getattr(store, "url", "off") == "off":
            return RateLimiter()  # no database to share counts through
        return SQLRateLimiter(store)
    if url.strip().lower() == "memory":
        return RateLimiter()
    if url.split(":", 1)[0].lower() in ("redis", "rediss", "unix"):
        return RedisRateLimiter(url)
    raise errors.ConfigError("ratelimit must be unset (the ledger's database), \"memory\" or a "
                             "redis://HOST:PORT/DB URL", key="server.ratelimit", value=url)
