"""The OpenAI wire format at the gateway's edge: errors, usage, headers, JSON bodies.

Every error leaves as OpenAI's shape, ``{"error": {"message", "type", "param",
"code"}}``, with the status an OpenAI SDK expects, so the SDK raises its usual
exception class. Provider API keys are scrubbed from every outgoing message.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .. import errors

if TYPE_CHECKING:
    from starlette.responses import Response


class HTTPError(Exception):
    """An error the gateway itself raises, already in OpenAI's terms."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",  # noqa: A002 - OpenAI's field
                 code: str | None = None, param: str | None = None,
                 retry_after: float | None = None, extra: Mapping[str, Any] | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.code, self.param = status, message, type, code, param
        self.retry_after = retry_after
        self.extra = dict(extra or {})
        self.headers = dict(headers or {})  # sent with the error (e.g. ``connection: close``)


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(payload: Any) -> str:
    """Compact JSON; Decimal as exact text, datetimes as ISO 8601."""
    return json.dumps(payload, default=_default, separators=(",", ":"))


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """``payload`` as a JSON response. ``headers``' names are lower-case already (every name
    the gateway sends is), so they join the response's raw headers as they are (Starlette's
    own headers argument lower-cases and re-scans them, once per response)."""
    from starlette.responses import Response
    response = Response(dumps(payload).encode(), status, media_type="application/json")
    if headers:
        response.raw_headers[:0] = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return response


class Scrubber:
    """Replaces every configured provider API key in outgoing text with ``***``."""

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def add(self, secret: str) -> None:
        """Scrub ``secret`` too (a sealed provider key the gateway started using)."""
        if len(secret) >= 4 and secret not in self.secrets:
            self.secrets = sorted({*self.secrets, secret}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, "***")
        return text


def error_body(err: HTTPError) -> dict[str, Any]:
    body: dict[str, Any] = {"message": err.message, "type": err.type, "param": err.param, "code": err.code}
    body.update(err.extra)
    return {"error": body}


def error_response(err: HTTPError, scrub: Scrubber | None = None) -> Response:
    from starlette.responses import JSONResponse
    if scrub is not None:
        err.message = scrub(err.message)
    headers = dict(err.headers)
    if err.retry_after is not None:
        headers["retry-after"] = str(max(1, math.ceil(err.retry_after)))
    return JSONResponse(error_body(err), err.status, headers)


def from_exception(exc: BaseException, now: datetime | None = None) -> HTTPError:
    """The HTTP error an unillm exception becomes (status, OpenAI type and code)."""
    if isinstance(exc, HTTPError):
        return exc
    msg = str(exc)
    if isinstance(exc, errors.UnknownModelError):
        return HTTPError(404, msg, code="model_not_found", param="model")
    if isinstance(exc, errors.InvalidRequestError):
        code = "unsupported_parameter" if isinstance(exc, errors.UnsupportedParamError) else None
        return HTTPError(400, msg, code=code, param=exc.param)
    if isinstance(exc, errors.MissingPriceError):
        return HTTPError(404, msg, code="model_not_priced", param="model")  # the gateway will not serve it
    if isinstance(exc, errors.BudgetExceededError):
        # held by calls in flight: retry in seconds; spent: when the period resets
        wait = exc.retry_after if exc.retry_after is not None else _until(exc.resets_at, now)
        return HTTPError(429, msg, type="insufficient_quota", code="budget_exceeded",
                         retry_after=wait, extra={"budget": exc.budget, "reason": exc.reason})
    if isinstance(exc, errors.RuleDeniedError):
        return HTTPError(403, msg, type="permission_error", code="rule_denied")
    if isinstance(exc, errors.ProviderError):
        return _provider(exc)
    if isinstance(exc, errors.LedgerError):
        what = "could not read the ledger" if exc.reading else "the call could not be recorded in the ledger"
        return HTTPError(503, what, type="server_error", code="ledger_unavailable")
    if isinstance(exc, (errors.ConfigError, errors.MissingDependencyError)):
        return HTTPError(500, msg, type="server_error", code="gateway_misconfigured")
    return HTTPError(500, "internal gateway error", type="server_error", code="internal_error")


def _provider(exc: errors.ProviderError) -> HTTPError:
    msg = str(exc)
    if isinstance(exc, errors.ContextWindowExceededError):
        return HTTPError(400, msg, code="context_length_exceeded", param="messages")
    if isinstance(exc, errors.BadRequestError):
        return HTTPError(400, msg, code="upstream_bad_request")
    if isinstance(exc, errors.NotFoundError):
        return HTTPError(404, msg, code="model_not_found", param="model")
    if isinstance(exc, errors.RateLimitError):
        return HTTPError(429, msg, type="rate_limit_error", code="upstream_rate_limited",
                         retry_after=exc.retry_after if exc.retry_after is not None else 1.0)
    if isinstance(exc, errors.TimeoutError):
        return HTTPError(504, msg, type="upstream_error", code="upstream_timeout")
    # the gateway's own provider key failing is not the caller's fault: 502, not 401/403
    return HTTPError(502, msg, type="upstream_error", code="upstream_error")


def _until(resets_at: Any, now: datetime | None) -> float | None:
    """Seconds until a budget resets (None for a budget that never does)."""
    if isinstance(resets_at, str):
        try:
            resets_at = datetime.fromisoformat(resets_at.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(resets_at, datetime):
        return None
    now = now or datetime.now(timezone.utc)
    at = resets_at if resets_at.tzinfo else resets_at.replace(tzinfo=timezone.utc)
    return max((at - now).total_seconds(), 1.0)


def openai_usage(usage: Any) -> dict[str, Any] | None:
    """OpenAI's usage object from unillm's billing buckets (plus cache writes, named)."""
    if usage is None:
        return None
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens,
                                  "cache_write_tokens": usage.cache_write_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


#: printable ASCII but ``%``: left as is in a header value
_HEADER_SAFE = "".join(chr(c) for c in range(0x20, 0x7F) if chr(c) not in "%")


def header_value(text: str) -> str:
    """``text`` safe for an HTTP header: printable ASCII stays, everything else (and ``%``)
    is percent-encoded UTF-8 (RFC 3986, the encoding RFC 8187 uses), so ``nano → mini``
    is ``nano %E2%86%92 mini`` and CR/LF can never end the header. Undo with
    ``urllib.parse.unquote``."""
    if text.isascii() and text.isprintable() and "%" not in text:
        return text
    from urllib.parse import quote
    return quote(text, safe=_HEADER_SAFE)


def unillm_headers(resp: Any) -> dict[str, str]:
    """``x-unillm-*`` headers of a finished call (names encoded by `header_value`)."""
    cost = resp.cost.total_usd if resp.cost is not None else None
    return {
        "x-unillm-cost": str(cost) if cost is not None else "unpriced",
        "x-unillm-tokens": str(resp.usage.total_tokens if resp.usage else 0),
        "x-unillm-cached": "true" if resp.cached else "false",
        "x-unillm-model": header_value(f"{resp.provider}/{resp.model}"),
        "x-unillm-rule": header_value(resp.rule or ""),
        "x-unillm-ledger-id": header_value(resp.ledger_id or ""),
    }


def completion_body(resp: Any) -> dict[str, Any]:
    """A `ChatResponse` as OpenAI's chat.completion JSON."""
    choices = []
    for c in resp.choices:
        msg: dict[str, Any] = {"role": "assistant", "content": c.message.content}
        if c.message.tool_calls:
            msg["tool_calls"] = [tc.model_dump() for tc in c.message.tool_calls]
        if c.message.refusal:
            msg["refusal"] = c.message.refusal
        choices.append({"index": c.index, "message": msg, "finish_reason": c.finish_reason or "stop",
                        "logprobs": None})
    return {"id": resp.id, "object": "chat.completion", "created": resp.created,
            "model": resp.model, "choices": choices, "usage": openai_usage(resp.usage),
            "system_fingerprint": None}


def chunk_body(chunk: Any) -> dict[str, Any]:
    """A `StreamChunk` as OpenAI's chat.completion.chunk JSON (usage left to the caller)."""
    choices = []
    for c in chunk.choices:
        delta = c.delta.model_dump(exclude_none=True)
        choices.append({"index": c.index, "delta": delta, "finish_reason": c.finish_reason,
                        "logprobs": None})
    return {"id": chunk.id, "object": "chat.completion.chunk", "created": chunk.created,
            "model": chunk.model, "choices": choices}
