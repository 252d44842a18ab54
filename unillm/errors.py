"""Every error unillm raises, in one tree.

::

    UnillmError
    ├── ConfigError                  bad unillm.toml / pricing / profile (file, key, value)
    ├── InvalidRequestError          bad messages or parameters, caught before any network call
    │   └── UnsupportedParamError    the vendor cannot honour a parameter (vendor, param)
    │       └── UnsupportedPartError a content part (file, audio) the vendor cannot take
    ├── UnknownModelError            no provider serves this model (suggestions)
    ├── MissingDependencyError       an optional SDK is not installed (install hint)
    ├── MissingPriceError            the model has no price in the price book
    ├── BudgetExceededError          a budget cannot pay for the call's worst case
    ├── RuleDeniedError              an optimization rule denied the call
    ├── LedgerError                  a call could not be recorded (disk full, database gone)
    └── ProviderError                the vendor (or the way to it) failed
        ├── AuthenticationError      401
        ├── PermissionDeniedError    403
        ├── NotFoundError            404
        ├── BadRequestError          400 / 422
        │   └── ContextWindowExceededError
        ├── RateLimitError           429            (retryable; carries retry_after)
        ├── ServerError              5xx            (retryable)
        ├── TimeoutError             no answer in time (retryable)
        ├── ConnectionError          could not reach the vendor (retryable)
        └── ResponseError            the vendor answered something we cannot read
            └── UsageError           its usage figures are impossible (the answer is kept)

`ProviderError` subclasses are produced at one boundary only: ``Client._translate``
hands every SDK exception to its adapter's ``translate_error`` (built on
`unillm.adapters.base.error_for_status`), and raises the result chained
(``raise ... from exc``) to the SDK exception. Classification goes by SDK exception class or HTTP status;
message text is consulted only to tell a context-window overflow from another
bad request.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "UnillmError",
    "ConfigError",
    "InvalidRequestError",
    "UnsupportedParamError",
    "UnsupportedPartError",
    "UnknownModelError",
    "MissingDependencyError",
    "MissingPriceError",
    "BudgetExceededError",
    "RuleDeniedError",
    "LedgerError",
    "ProviderError",
    "AuthenticationError",
    "PermissionDeniedError",
    "NotFoundError",
    "BadRequestError",
    "ContextWindowExceededError",
    "RateLimitError",
    "ServerError",
    "TimeoutError",
    "ConnectionError",
    "ResponseError",
    "UsageError",
    "did_you_mean",
]


class ModelMismatchWarning(UserWarning):  # a warning, not an error: outside __all__'s tree
    """The vendor reports having answered with another model than the one unillm sent
    (not a dated snapshot of it). The call is priced as the reported model."""


def did_you_mean(value: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Close matches of ``value`` among ``candidates``, best first."""
    return difflib.get_close_matches(value, list(candidates), n=n, cutoff=0.5)


class UnillmError(Exception):
    """Root of every error unillm raises."""


class ConfigError(UnillmError, ValueError):
    """A configuration file or value is wrong. Names the file, the key and the value."""

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None,
                 value: Any = None) -> None:
        self.file, self.key, self.value = file, key, value
        where = ": ".join(p for p in (file, key) if p)
        super().__init__(f"{where}: {message}" if where else message)


class InvalidRequestError(UnillmError, ValueError):
    """The request is malformed; raised before anything is sent."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        self.param = param
        super().__init__(message)


class UnsupportedParamError(InvalidRequestError):
    """The vendor cannot honour a parameter. Pass ``drop_params=True`` to drop it instead."""

    def __init__(self, provider: str, param: str, hint: str = "") -> None:
        self.provider = provider
        msg = f"{provider} does not support the parameter {param!r}"
        msg += f" ({hint})" if hint else ""
        super().__init__(msg + "; pass drop_params=True to drop it silently", param=param)


class UnsupportedPartError(UnsupportedParamError):
    """The vendor cannot take a content part (a file, audio): refused, never dropped."""

    def __init__(self, provider: str, part: str, hint: str = "") -> None:
        self.provider = provider
        msg = f"{provider} does not support the content part {part!r}"
        InvalidRequestError.__init__(self, msg + (f" ({hint})" if hint else ""), param=part)


class UnknownModelError(UnillmError, LookupError):
    """No configured provider serves the model."""

    def __init__(self, model: str, suggestions: list[str] | None = None, detail: str = "") -> None:
        self.model = model
        self.suggestions = suggestions or []
        msg = f"unknown model {model!r}"
        if detail:
            msg += f": {detail}"
        if self.suggestions:
            msg += "; did you mean " + ", ".join(repr(s) for s in self.suggestions) + "?"
        else:
            msg += "; use 'provider/model' (e.g. 'openai/gpt-4o') or add an alias in unillm.toml"
        super().__init__(msg)


class MissingDependencyError(UnillmError, ImportError):
    """An optional dependency is not installed."""

    def __init__(self, package: str, extra: str, *, install: str = "") -> None:
        self.package, self.extra = package, extra
        super().__init__(f"{package} is not installed; run: pip install '{install or f'unillm[{extra}]'}'")


class MissingPriceError(UnillmError, LookupError):
    """The model has no price; unillm never records a silent $0."""

    def __init__(self, provider: str, model: str, suggestions: list[str] | None = None) -> None:
        self.provider, self.model = provider, model
        self.suggestions = suggestions or []
        msg = (f"no price for {provider}/{model}: add [{provider}.\"{model}\"] to your pricing "
               "file, or set on_missing_price = \"record\" to record the call unpriced")
        if self.suggestions:
            msg += "; priced models nearby: " + ", ".join(self.suggestions)
        super().__init__(msg)


class BudgetExceededError(UnillmError):
    """A budget cannot pay for the worst case of this call. Nothing was sent.

    ``reason`` says why: ``"spent"`` (settled spend leaves no room: ``retry_after`` is the
    seconds until the period resets, None for a ``total`` budget) or ``"held"`` (calls in
    flight hold the rest; their holds settle at what they really cost, usually far less, so
    ``retry_after`` is a few seconds).
    """

    def __init__(self, budget: str, *, scope: dict[str, str] | None = None, period: str = "",
                 limit: Any = None, spent: Any = None, reserved: Any = None,
                 estimate: Any = None, resets_at: Any = None, unit: str = "usd",
                 reason: str = "spent", retry_after: float | None = None) -> None:
        self.budget, self.scope, self.period = budget, scope or {}, period
        self.limit, self.spent, self.reserved = limit, spent, reserved
        self.estimate, self.resets_at, self.unit = estimate, resets_at, unit
        self.reason, self.retry_after = reason, retry_after
        scope_s = ",".join(f"{k}={v}" for k, v in self.scope.items()) or "global"
        if reason == "held":
            tail = f"; held by calls in flight, retry in {retry_after:g}s" if retry_after else \
                "; held by calls in flight"
        else:
            tail = f"; resets at {resets_at}" if resets_at else ""
        super().__init__(
            f"budget {budget!r} ({scope_s}, {period}) would be exceeded: limit {limit} {unit}, "
            f"spent {spent}, reserved {reserved}, this call up to {estimate}" + tail
        )


class RuleDeniedError(UnillmError):
    """An optimization rule denied the call."""

    def __init__(self, rule: str, reason: str) -> None:
        self.rule, self.reason = rule, reason
        super().__init__(f"rule {rule!r} denied the call: {reason}")


class LedgerError(UnillmError):
    """The ledger could not record a call, or be read (disk full, database gone). Nothing
    already recorded is lost. When the vendor call itself succeeded, ``response`` holds its answer
    (it was paid for; it is just not in the ledger). ``reading`` is True when a read failed."""

    def __init__(self, message: str, *, response: Any = None, reading: bool = False) -> None:
        self.response = response
        self.reading = reading
        super().__init__(message)


class ProviderError(UnillmError):
    """The vendor, or the road to it, failed."""

    retryable = False

    def __init__(self, message: str, *, provider: str | None = None, model: str | None = None,
                 status_code: int | None = None, retry_after: float | None = None,
                 body: Any = None) -> None:
        self.provider, self.model = provider, model
        self.status_code, self.retry_after, self.body = status_code, retry_after, body
        prefix = "/".join(p for p in (provider, model) if p)
        status = f" [{status_code}]" if status_code else ""
        super().__init__(f"{prefix}{status}: {message}" if prefix else message)


class AuthenticationError(ProviderError):
    """401: the API key is missing, wrong or revoked."""


class PermissionDeniedError(ProviderError):
    """403: the key may not use this model or resource."""


class NotFoundError(ProviderError):
    """404: the model or endpoint does not exist at the vendor."""


class BadRequestError(ProviderError):
    """400/422: the vendor rejected the request."""


class ContextWindowExceededError(BadRequestError):
    """The prompt (plus max_tokens) does not fit the model's context window."""


class RateLimitError(ProviderError):
    """429: slow down; ``retry_after`` says for how long when the vendor said so."""

    retryable = True


class ServerError(ProviderError):
    """5xx: the vendor failed."""

    retryable = True


class TimeoutError(ProviderError):  # noqa: A001 - deliberate, namespaced under unillm.errors
    """No answer within the timeout. ``sent`` is False when the call's deadline passed before
    the attempt was sent (nothing the vendor could bill)."""

    retryable = True
    sent = True


class ConnectionError(ProviderError):  # noqa: A001
    """The vendor could not be reached."""

    retryable = True


class ResponseError(ProviderError):
    """The vendor answered with something unreadable (malformed JSON, a cut stream)."""


class UsageError(ResponseError):
    """The vendor answered, but its usage figures are impossible (negative, fractional, a part
    larger than its whole). Nothing is clamped: ``usage`` holds the figures as reported (with
    ``usage.problem``), ``response`` the answer, which was paid for; the ledger row keeps the
    raw usage with status ``error`` and no cost."""

    def __init__(self, message: str, *, usage: Any = None, response: Any = None, **kw: Any) -> None:
        self.usage, self.response = usage, response
        super().__init__(message, **kw)


# ── secrets never leave in an error ──────────────────────────────────────────

#: what an API key (or a recognisable piece of one) becomes in errors and logs
REDACTED = "sk-...REDACTED"
_TOKEN = re.compile(r"[A-Za-z0-9_\-.*\u2026]{3,}")
_MASK = re.compile(r"[*\u2026]+|\.{3,}")


class Redactor:
    """Removes API keys from text, error bodies and exceptions (the vendor's chained one too).

    A vendor may echo the key it was sent, whole, truncated, or masked in the middle
    (OpenAI's 401: ``sk-proj-****...wxyz``): each becomes `REDACTED`.
    """

    def __init__(self, secrets: Iterable[str | None]) -> None:
        self.secrets = sorted({s for s in secrets if s and len(s) >= 8}, key=len, reverse=True)

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def text(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return _TOKEN.sub(self._token, text) if self.secrets else text

    def _token(self, match: re.Match[str]) -> str:
        token = match.group(0)
        if token == REDACTED or "REDACTED" in token:
            return token
        for secret in self.secrets:
            if len(token) >= 6 and secret.startswith(token):       # a truncated echo
                return REDACTED
            if len(secret) >= 16 and len(token) >= 8 and token.startswith(secret[:8]):
                return REDACTED                                   # the key's recognisable head
            parts = [p for p in _MASK.split(token)]
            if len(parts) > 1 and ((len(parts[0]) >= 3 and secret.startswith(parts[0]))
                                   or (len(parts[-1]) >= 4 and secret.endswith(parts[-1]))):
                return REDACTED                                   # a masked echo
        return token

    def value(self, value: Any, depth: int = 0) -> Any:
        """``value`` with every string in it redacted (dicts, lists and tuples copied)."""
        if isinstance(value, str):
            return self.text(value)
        if depth > 32:
            return value
        if isinstance(value, dict):
            return {self.value(k, depth + 1): self.value(v, depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self.value(v, depth + 1) for v in value) if type(value) in (list, tuple) \
                else [self.value(v, depth + 1) for v in value]
        return value

    def exception(self, exc: BaseException) -> BaseException:
        """Redact ``exc`` in place, and every exception chained to it: its args (what ``str``,
        ``repr`` and tracebacks print), its plain attributes (``body``, ``message``,
        ``details``...) and notes. Pickling keeps args and attributes: both are clean."""
        seen: set[int] = set()
        todo: list[BaseException | None] = [exc]
        while todo:
            e = todo.pop()
            if e is None or id(e) in seen or not self.secrets:
                continue
            seen.add(id(e))
            try:
                e.args = tuple(self.value(a) for a in e.args)
                for name, attr in list(vars(e).items()):
                    if isinstance(attr, (str, dict, list, tuple)):
                        setattr(e, name, self.value(attr))
            except (AttributeError, TypeError):  # a read-only attribute: leave it
                pass
            todo.extend((e.__cause__, e.__context__))
        return exc
