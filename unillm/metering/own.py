"""`OWN`: set while unillm's own `Client` sends a request, which it records itself, so
`observe()`'s hooks leave it alone (no call is ever counted twice)."""

from __future__ import annotations

from contextvars import ContextVar

OWN: ContextVar[bool] = ContextVar("unillm_own_request", default=False)
