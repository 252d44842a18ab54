"""``[[apis]]``: what a metered non-LLM API costs, and where each unit is read from.

::

    [[apis]]
    name  = "elevenlabs:tts"                         # provider:endpoint, as the ledger shows it
    match = { host = "api.elevenlabs.io", path = "/v1/text-to-speech/*" }
    per_1k_chars = 0.30
    units = { chars = "request.json:text" }

``match``: ``host`` (``host`` or ``host:port``, exact, case-insensitive), optional
``method`` and a ``path`` glob (``*`` matches within and across segments, as `fnmatch`).
Prices (USD, exact decimals): ``per_call``, ``per_1k_chars`` (unit ``chars``),
``per_minute`` (``minutes``, or ``seconds`` / 60), ``per_image`` (``images``) and
``per_million = { UNIT = usd }`` for any unit the entry names. A unit source is
``request.json:PATH`` / ``response.json:PATH`` (dotted names, ``[i]`` indexes; a string
counts its characters, a list its items), ``request.header:NAME`` / ``response.header:NAME``,
or ``request.body:bytes|chars`` / ``response.body:bytes|chars``. A unit that cannot be
read makes the row ``unpriced`` with the reason (never $0).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

#: the units the fixed price keys bill
PRICE_UNITS: dict[str, str] = {"per_1k_chars": "chars", "per_minute": "minutes", "per_image": "images"}
_SOURCE = re.compile(r"^(request|response)\.(json|header|body):(.+)$")
_PATH_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _usd(v: Any) -> Any:
    """An exact price: a TOML/Python float through its shortest repr, never its binary twin."""
    if isinstance(v, bool):
        raise ValueError("must be a number of USD")  # noqa: TRY004 - pydantic reports ValueError
    if isinstance(v, (float, int, str)):
        try:
            out = Decimal(repr(v) if isinstance(v, float) else str(v))
        except InvalidOperation:
            raise ValueError(f"must be a number of USD, got {v!r}") from None
        if not out.is_finite() or out < 0:
            raise ValueError(f"must be a finite number of USD >= 0, got {v!r}")
        return out
    return v


class ApiMatch(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    host: str = Field(min_length=1)
    method: str | None = None
    path: str = "*"

    @field_validator("host")
    @classmethod
    def _host(cls, v: str) -> str:
        if "/" in v or not v.isprintable() or " " in v:
            raise ValueError("is a host or host:port, like 'api.stripe.com', not a URL")
        return v.lower()

    @field_validator("method")
    @classmethod
    def _method(cls, v: str | None) -> str | None:
        return None if v is None else v.upper()

    @field_validator("path")
    @classmethod
    def _path(cls, v: str) -> str:
        if not v.startswith(("/", "*")):
            raise ValueError("is a path glob starting with '/', like '/v1/charges' or '/v1/tts/*'")
        return v


class UnitSource(BaseModel):
    """Where one unit's count is read from (``request.json:text``)."""

    model_config = ConfigDict(frozen=True)
    side: Literal["request", "response"]
    kind: Literal["json", "header", "body"]
    where: str

    def read(self, exchange: Exchange) -> tuple[Decimal | None, str]:
        """The count, or None and why not."""
        body = exchange.request_body if self.side == "request" else exchange.response_body
        if self.kind == "header":
            headers = exchange.request_headers if self.side == "request" else exchange.response_headers
            raw = headers.get(self.where.lower())
            return _number(raw, self)
        if self.kind == "body":
            if self.where == "bytes":
                return Decimal(len(body)), ""
            return Decimal(len(body.decode("utf-8", "replace"))), ""
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            return None, f"{self.label}: the {self.side} body is not JSON"
        for name, index in _PATH_PART.findall(self.where):
            if name and isinstance(doc, Mapping) and name in doc:
                doc = doc[name]
            elif index and isinstance(doc, list) and int(index) < len(doc):
                doc = doc[int(index)]
            else:
                return None, f"{self.label}: no {self.where!r} in the {self.side} JSON"
        if isinstance(doc, str):
            return Decimal(len(doc)), ""
        if isinstance(doc, list):
            return Decimal(len(doc)), ""
        return _number(doc, self)

    @property
    def label(self) -> str:
        return f"{self.side}.{self.kind}:{self.where}"


def _number(raw: Any, source: UnitSource) -> tuple[Decimal | None, str]:
    if raw is None:
        return None, f"{source.label}: not present"
    if isinstance(raw, bool):
        return None, f"{source.label}: {raw!r} is not a count"
    try:
        out = Decimal(repr(raw) if isinstance(raw, float) else str(raw).strip())
    except InvalidOperation:
        return None, f"{source.label}: {str(raw)[:40]!r} is not a count"
    if not out.is_finite() or out < 0:
        return None, f"{source.label}: {str(raw)[:40]!r} is not a count"
    return out, ""


class ApiSpec(BaseModel):
    """One ``[[apis]]`` entry (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)
    name: str
    match: ApiMatch
    per_call: Decimal | None = None
    per_1k_chars: Decimal | None = None
    per_minute: Decimal | None = None
    per_image: Decimal | None = None
    per_million: dict[str, Decimal] = Field(default_factory=dict)
    units: dict[str, UnitSource] = Field(default_factory=dict)

    @field_validator("per_call", "per_1k_chars", "per_minute", "per_image", mode="before")
    @classmethod
    def _price(cls, v: Any) -> Any:
        return _usd(v)

    @field_validator("per_million", mode="before")
    @classmethod
    def _millions(cls, v: Any) -> Any:
        if isinstance(v, Mapping):
            return {k: _usd(x) for k, x in v.items()}
        raise ValueError("is a table of unit = USD per million, like { tokens = 0.5 }")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        provider, sep, endpoint = v.partition(":")
        if not sep or not provider.strip() or not endpoint.strip() or not v.isprintable():
            raise ValueError("is 'provider:endpoint', like 'stripe:charges.create'")
        return v

    @field_validator("units", mode="before")
    @classmethod
    def _sources(cls, v: Any) -> Any:
        if not isinstance(v, Mapping):
            raise ValueError(  # noqa: TRY004 - pydantic reports ValueError
                'is a table of unit = "request.json:PATH" (or response.*, *.header:NAME, *.body:bytes)')
        out = {}
        for unit, spec in v.items():
            if isinstance(spec, UnitSource):
                out[unit] = spec
                continue
            m = _SOURCE.match(spec) if isinstance(spec, str) else None
            if m is None or (m[2] == "body" and m[3] not in ("bytes", "chars")):
                raise ValueError(f"{unit} = {spec!r}: a source is request.json:PATH, response.json:PATH, "
                                 f"request.header:NAME, response.header:NAME or request.body:bytes|chars")
            out[unit] = UnitSource(side=m[1], kind=m[2], where=m[3])
        return out

    @model_validator(mode="after")
    def _priced_units(self) -> ApiSpec:
        if not (self.per_call is not None or any(getattr(self, k) is not None for k in PRICE_UNITS)
                or self.per_million):
            raise ValueError("an api needs a price: per_call, per_1k_chars, per_minute, per_image or per_million")
        for key, unit in PRICE_UNITS.items():
            if getattr(self, key) is not None and unit not in self.units \
                    and not (unit == "minutes" and "seconds" in self.units):
                raise ValueError(f"{key} needs units.{unit} (where the count is read from)")
        for unit in self.per_million:
            if unit not in self.units:
                raise ValueError(f"per_million.{unit} needs units.{unit} (where the count is read from)")
        return self

    @property
    def provider(self) -> str:
        return self.name.partition(":")[0]

    @property
    def endpoint(self) -> str:
        return self.name.partition(":")[2]

    def matches(self, method: str, host: str, port: int | None, path: str) -> bool:
        m = self.match
        if m.method is not None and m.method != method:
            return False
        if m.host != host and m.host != f"{host}:{port}":
            return False
        return fnmatch.fnmatchcase(path, m.path)

    @property
    def known_before(self) -> bool:
        """Every unit is read from the request: the cost is known before it is sent."""
        return all(s.side == "request" for s in self.units.values())

    def cost(self, exchange: Exchange, *, request_only: bool = False) -> tuple[Decimal | None, dict[str, Decimal], str]:
        """``(usd, units, why_unpriced)``: exact, or None with the reason."""
        counts: dict[str, Decimal] = {}
        for unit, source in self.units.items():
            if request_only and source.side != "request":
                continue
            value, why = source.read(exchange)
            if value is None:
                return None, counts, why
            counts[unit] = value
        if request_only and not self.known_before:
            return None, counts, "response-side units are counted after the call"
        total = self.per_call or Decimal(0)
        minutes = counts.get("minutes", counts["seconds"] / 60 if "seconds" in counts else None)
        for key, unit in PRICE_UNITS.items():
            rate = getattr(self, key)
            if rate is not None:
                count = minutes if unit == "minutes" else counts[unit]
                assert count is not None  # checked at load
                total += rate * count / (1000 if unit == "chars" else 1)
        for unit, rate in self.per_million.items():
            total += rate * counts[unit] / 10**6
        return total, {**counts, "calls": Decimal(1)}, ""


class Exchange:
    """One HTTP request and its response, as the meter sees them (headers lower-cased).

    What a request to price rarely needs is never made: the URL's text and each side's
    lower-cased header dict are built on first use from what the HTTP library handed over
    (its own case-insensitive headers object), and `header` reads one response header
    without building the dict at all."""

    __slots__ = ("method", "_url", "host", "port", "path", "_request_headers", "request_body",
                 "status", "_response_headers", "response_body", "_json", "_lowered")

    def __init__(self, method: str, url: object, host: str, port: int | None, path: str,
                 request_headers: Mapping[str, str], request_body: bytes) -> None:
        self.method, self._url, self.host, self.port, self.path = method.upper(), url, host.lower(), port, path
        self._request_headers: Mapping[str, str] = request_headers
        self.request_body = request_body
        self.status = 0
        self._response_headers: Mapping[str, str] = _NO_HEADERS
        self.response_body = b""
        self._json: Any = ...
        self._lowered = 0  # bit 1: request headers lower-cased, bit 2: response headers

    @property
    def url(self) -> str:
        url = self._url
        if not isinstance(url, str):
            url = self._url = str(url)
        return url

    @property
    def request_headers(self) -> dict[str, str]:
        return self._lower(1)

    @property
    def response_headers(self) -> dict[str, str]:
        return self._lower(2)

    @response_headers.setter
    def response_headers(self, headers: Mapping[str, str]) -> None:
        """The response's headers as the library has them (lower-cased on first use)."""
        self._response_headers = headers
        self._lowered &= ~2

    def _lower(self, side: int) -> dict[str, str]:
        """One side's headers as a lower-cased dict, built once (``side``: 1 request, 2 response)."""
        attr = "_request_headers" if side == 1 else "_response_headers"
        if not self._lowered & side:
            setattr(self, attr, {k.lower(): v for k, v in getattr(self, attr).items()})
            self._lowered |= side
        headers: dict[str, str] = getattr(self, attr)
        return headers

    def header(self, name: str) -> str:
        """One response header (``name`` lower-case), "" when absent. A library's own headers
        object answers case-insensitively; a plain mapping is lower-cased first."""
        headers = self._response_headers
        if not self._lowered & 2 and type(headers) is dict:
            headers = self._lower(2)
        value = headers.get(name)
        return value if isinstance(value, str) else ""

    @property
    def parsed(self) -> bool:
        """True once `request_json` has parsed the request body."""
        return self._json is not ...

    def request_json(self) -> Any:
        """The request body as JSON (None when it is not), parsed once."""
        if self._json is ...:
            try:
                self._json = json.loads(self.request_body) if self.request_body else None
            except ValueError:
                self._json = None
        return self._json


_NO_HEADERS: Mapping[str, str] = {}
