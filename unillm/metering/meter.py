"""The meter: which requests are metered, what they cost, and their ledger rows.

The HTTP hooks (`unillm.metering.hooks`) hand every outgoing request to `Meter.target`;
a request it does not match goes out untouched. A matched one gets `Meter.admit` before it
is sent (a budget refusal raises there, so nothing leaves) and `Meter.finish` once its
response has been read to the end or closed, which prices it and writes its row:

* an LLM vendor's chat endpoint (its own host, or a configured profile's ``base_url``):
  the JSON or SSE response goes through the same converter `Client.chat` uses, so the
  cached, cache-write and reasoning buckets land where ``chat()`` puts them;
* an ``[[apis]]`` entry: its units are read from the request and response and priced at
  the book's price for ``provider:endpoint`` when it has one, else at the entry's own;
* a registered extractor's shape (`unillm.metering.extractors`).

Recording never breaks the application's call: a row that cannot be written is logged.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import json.scanner
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from .. import errors, sections
from .apis import ApiSpec, Exchange

log = logging.getLogger("unillm.observe")

#: the vendors' own API hosts, by protocol (profiles add their ``base_url`` hosts)
VENDOR_HOSTS: Mapping[str, str] = {
    "api.openai.com": "openai", "api.anthropic.com": "anthropic",
    "generativelanguage.googleapis.com": "google", "api.cohere.com": "cohere", "api.cohere.ai": "cohere",
}
#: the paths (after a profile's base path) that answer with chat usage, by protocol
CHAT_PATHS: Mapping[str, tuple[str, ...]] = {
    "openai": ("/chat/completions",),
    "anthropic": ("/v1/messages", "/messages"),
    "google": ("*:generateContent", "*:streamGenerateContent"),
    "cohere": ("/v2/chat", "/v1/chat"),
}
#: the most of a response body kept to price it (an LLM answer is far smaller)
MAX_CAPTURE = 32 * 2**20
#: distinct request lines whose target `Meter.target` remembers (and prices `Meter._price` keeps)
_TARGETS_KEPT = 1024


@dataclass(frozen=True)
class Vendor:
    provider: str
    protocol: str


#: the target of a request only the registered extractors may know (`extractors.extract`)
EXTRACT = Vendor("", "")
#: a request nothing prices, recorded anyway (``observe(record_unknown=True)``)
UNKNOWN = Vendor("", "*")


@dataclass(slots=True)
class Pending:
    """One metered request in flight."""

    target: Vendor | ApiSpec
    exchange: Exchange
    tags: dict[str, str]
    section: str | None
    t0: float = field(default_factory=time.perf_counter)
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    hold: Any = None
    done: bool = False


class Meter:
    """What `observe()` meters for one client (see the module docstring)."""

    def __init__(self, client: Any, apis: Iterable[ApiSpec], *, record_unknown: bool = False,
                 tags: Mapping[str, str] | None = None) -> None:
        self.client = client
        self.apis = list(apis)
        self.record_unknown = record_unknown
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self._hosts = self._vendor_hosts()
        #: (method, scheme, host, port, path) -> what `target` found (None: nothing matched)
        self._targets: dict[tuple[str, str, str, int | None, str], Vendor | ApiSpec | None] = {}
        self._adapters: dict[str, Any] = {}
        #: (the book, {(provider, model, UTC day): its price in that book}), for `_price`
        self._prices: tuple[Any, dict[tuple[str, str, date], Any]] = (None, {})
        from ..budgets.settle import commit
        from ..ledger import CallRecord
        self._commit, self._record = commit, CallRecord  # imported once, not per row
        #: no ledger (and so no budget, which lives in it): a row would go nowhere, so the
        #: hooks let every request pass as chat() builds no row (the gateway still prices)
        self.idle: bool = not client._recording

    def _vendor_hosts(self) -> dict[tuple[str, int], list[tuple[str, Vendor]]]:
        """(host, port) -> [(base path, vendor)], configured providers first."""
        table: dict[tuple[str, int], list[tuple[str, Vendor]]] = {}
        configured: frozenset[str] = self.client.settings.configured_providers
        order = sorted(self.client.providers.items(),
                       key=lambda kv: (kv[0] not in configured, kv[0] != kv[1].adapter, kv[1].priority))
        for name, p in order:
            if not p.base_url:
                continue
            parts = urlsplit(p.base_url)
            if parts.hostname:
                key = (parts.hostname.lower(), parts.port or (443 if parts.scheme == "https" else 80))
                table.setdefault(key, []).append((parts.path.rstrip("/"), Vendor(name, p.adapter)))
        for host, protocol in VENDOR_HOSTS.items():
            listed = table.setdefault((host, 443), [])
            if protocol in self.client.providers and ("", Vendor(protocol, protocol)) not in listed:
                listed.append(("", Vendor(protocol, protocol)))
        return table

    # ── which requests ──────────────────────────────────────────────────────

    def target(self, method: str, scheme: str, host: str, port: int | None, path: str) -> Vendor | ApiSpec | None:
        """What prices a request (an ``[[apis]]`` entry, a vendor, `EXTRACT`), or None. Matched
        once per distinct request line: every later request to it is one dict lookup."""
        key = (method, scheme, host, port, path)
        try:
            found = self._targets[key]
        except KeyError:
            found = self._match(*key)
            if len(self._targets) >= _TARGETS_KEPT:  # paths with ids in them: never unbounded
                self._targets.clear()
            self._targets[key] = found
        if found is not None:
            return found
        from .extractors import has_any
        return EXTRACT if self.record_unknown or has_any() else None

    def _match(self, method: str, scheme: str, host: str, port: int | None, path: str) -> Vendor | ApiSpec | None:
        host = host.lower()
        for spec in self.apis:
            if spec.matches(method, host, port, path):
                return spec
        candidates = self._hosts.get((host, port or (443 if scheme == "https" else 80)))
        for base, vendor in candidates or () if method == "POST" else ():
            if path.startswith(base + "/") or path == base:
                rest = path[len(base):]
                globs = CHAT_PATHS.get(vendor.protocol, ("*",))
                if any(fnmatch.fnmatchcase(rest, g) for g in globs):
                    return vendor
        return None

    # ── before it is sent ───────────────────────────────────────────────────

    def start(self, target: Vendor | ApiSpec, exchange: Exchange, tags: Mapping[str, str] | None = None) -> Pending:
        """``tags``: the row's own (the gateway's tenant tags), over the client's and observe()'s."""
        return Pending(target, exchange, {**self.client.ledger.default_tags, **self.tags, **(tags or {})},
                       sections.current())

    def admit(self, pending: Pending) -> None:
        """Hold the request's worst case in every matching budget (refused: raises
        `BudgetExceededError`, and the request is not sent)."""
        budgets = self.client.budgets
        if not budgets or not budgets.matching(pending.tags, _now()):
            return
        worst = self._worst(pending)
        adm = budgets.admit(pending.tags, worst, _now())
        for event in adm.events:
            budgets.alerts.emit(event)
        if adm.denied is not None:
            self._write(pending, self._denied(pending, adm.denied), None, None, 0)
            raise adm.denied
        pending.hold = adm.hold

    def _worst(self, pending: Pending) -> Any:
        from ..budgets import Worst
        target, ex = pending.target, pending.exchange
        if target is EXTRACT:
            return Worst(Decimal(0), Decimal(0), 0, 0, 0)  # known only after: charged then
        if isinstance(target, ApiSpec):
            usd, _, _ = target.cost(ex, request_only=True)
            known = usd if usd is not None else (target.per_call or Decimal(0))
            return Worst(known, Decimal(0), 0, 0, 0)
        return vendor_worst(self.client, target, ex)

    # ── after the response ──────────────────────────────────────────────────

    def finish(self, pending: Pending, error: BaseException | None = None) -> Any:
        """Price the exchange and write its row (once; never raises); the row, or None."""
        if pending.done:
            return None
        pending.done = True
        try:
            rec, cost, tokens = self._row(pending, error)
            if rec is not None:
                self._write(pending, rec, cost, pending.hold, tokens)
            elif pending.hold is not None:
                self._release(pending.hold)
            return rec
        except Exception:  # never break the application's call
            log.exception("unillm.observe: could not record %s %s", pending.exchange.method,
                          _safe_url(pending.exchange.url))
            return None

    def _row(self, pending: Pending, error: BaseException | None) -> tuple[Any, Any, int]:
        CallRecord = self._record  # noqa: N806 - the class
        ex, target = pending.exchange, pending.target
        latency = (time.perf_counter() - pending.t0) * 1000
        base: dict[str, Any] = {"started_at": pending.started, "ended_at": _now(), "latency_ms": latency,
                                "tags": pending.tags, "section": pending.section}
        if error is not None or ex.status >= 400:
            provider, model = _names(target, ex)
            kind = type(error).__name__ if error is not None else f"http_{ex.status}"
            # sent and cut: the vendor may bill it, so its hold is counted at worst case
            status = "unknown" if error is not None and ex.status == 0 else "error"
            return CallRecord.from_parts(provider=provider, model=model, status=status, error_class=kind,
                                         **base), None, 0
        if isinstance(target, ApiSpec):
            usd, units, why = target.cost(ex)
            price = self._book_price(target.provider, target.endpoint)
            if price is not None and usd is not None:
                from ..types import Usage
                cost = price.cost(Usage(input_tokens=0, output_tokens=0), units=_book_units(units))
                usd = cost.total_usd
            if usd is None:
                return CallRecord.from_parts(provider=target.provider, model=target.endpoint, status="unpriced",
                                             error_class=f"unpriced: {why}", units=units, **base), None, 0
            from ..types import Cost
            cost = Cost(other_usd=usd, price_version="[[apis]] " + target.name) if price is None else cost
            return CallRecord.from_parts(provider=target.provider, model=target.endpoint, cost=cost,
                                         units=units, **base), cost, 0
        if target is EXTRACT:
            rec, cost, tokens = self._extracted(ex, base)
            if rec is None and self.record_unknown:
                rec = CallRecord.from_parts(provider=ex.host + (f":{ex.port}" if ex.port else ""), model=ex.path,
                                            status="unpriced", error_class="unpriced: no [[apis]] entry, vendor "
                                            "or extractor knows this API", **base)
            return rec, cost, tokens
        return self._vendor_row(pending, base)

    def _vendor_row(self, pending: Pending, base: dict[str, Any]) -> tuple[Any, Any, int]:
        """A vendor's answer priced from its usage (the path every raw SDK call takes)."""
        CallRecord, ex, target = self._record, pending.exchange, pending.target  # noqa: N806
        assert isinstance(target, Vendor)
        sse = _is_sse(ex)
        resp = vendor_usage(self.client, target, ex, self._adapters, sse=sse)
        if resp is None:
            if not self.record_unknown:
                return None, None, 0
            return CallRecord.from_parts(provider=target.provider, model=_names(target, ex)[1], status="unpriced",
                                         error_class="unpriced: no usage in the response", **base), None, 0
        model, usage = resp
        try:
            cost = self._price(target.provider, model, pending.started).cost(usage)
        except errors.MissingPriceError as exc:
            return CallRecord.from_parts(provider=target.provider, model=model, usage=usage, status="unpriced",
                                         error_class=f"unpriced: {exc}"[:200], **base), None, usage.total_tokens
        return CallRecord.from_parts(provider=target.provider, model=model, usage=usage, cost=cost,
                                     requested_model=_requested(ex) or model, stream=sse, **base), \
            cost, usage.total_tokens

    def _extracted(self, ex: Exchange, base: dict[str, Any]) -> tuple[Any, Any, int]:
        """A registered extractor's reading, priced by the book (else unpriced, never $0)."""
        from ..ledger import CallRecord
        from ..types import Usage
        from .extractors import extract
        found = extract(ex)
        if found is None:
            return None, None, 0
        name, got = found
        usage = Usage(input_tokens=got.input_tokens, output_tokens=got.output_tokens,
                      cache_read_tokens=got.cache_read_tokens, cache_write_tokens=got.cache_write_tokens,
                      reasoning_tokens=got.reasoning_tokens)
        units = {k: Decimal(str(v)) for k, v in got.units.items()}
        price = self._book_price(got.provider, got.model)
        if price is None:
            return CallRecord.from_parts(provider=got.provider, model=got.model, usage=usage, units=units,
                                         status="unpriced", error_class=f"unpriced: extractor {name!r}: no price "
                                         f"for {got.provider}/{got.model}", **base), None, usage.total_tokens
        cost = price.cost(usage, units=_book_units(units))
        return CallRecord.from_parts(provider=got.provider, model=got.model, usage=usage, cost=cost, units=units,
                                     **base), cost, usage.total_tokens

    def _price(self, provider: str, model: str, at: datetime) -> Any:
        """The book's price for ``provider``/``model`` on ``at``'s day (`PriceBook.price`),
        looked up once per model and day; a book replaced (the gateway's hot reload) is
        asked afresh. Raises `MissingPriceError` as the book does (not remembered)."""
        book = self.client.pricebook
        of, prices = self._prices
        if of is not book:  # each book its own table: a thread still on the old one fills the old one
            of, prices = self._prices = (book, {})
        key = (provider, model, at.astimezone(timezone.utc).date())
        price = prices.get(key)
        if price is None:
            price = book.price(provider, model, at)
            if len(prices) >= _TARGETS_KEPT:
                prices.clear()
            prices[key] = price
        return price

    def _book_price(self, provider: str, model: str) -> Any:
        try:
            return self.client.pricebook.price(provider, model, _now())
        except errors.MissingPriceError:
            return None

    def _denied(self, pending: Pending, err: BaseException) -> Any:
        from ..ledger import CallRecord
        provider, model = _names(pending.target, pending.exchange)
        return CallRecord.from_parts(provider=provider, model=model, status="budget_denied",
                                     error_class=type(err).__name__, tags=pending.tags, section=pending.section)

    def _write(self, pending: Pending, rec: Any, cost: Any, hold: Any, tokens: int) -> None:
        """The row, settled into the budgets: its hold's, or (nothing held: an extractor's
        reading) charged like reported usage, since the money is spent."""
        budgets = self.client.budgets
        self._commit(self.client.ledger, budgets, rec, hold, cost.total_usd if cost is not None else None,
                     tokens, charge=pending.tags if budgets else None)

    def _release(self, hold: Any) -> None:
        with self.client.ledger.store.transaction() as tx:
            self.client.budgets.release(tx, hold)


# ── vendors ──────────────────────────────────────────────────────────────────

def vendor_usage(client: Any, vendor: Vendor, ex: Exchange, adapters: dict[str, Any] | None = None, *,
                 sse: bool | None = None) -> tuple[str, Any] | None:
    """``(model, Usage)`` from a vendor's JSON or SSE response, or None when it has none.
    ``adapters``: a cache of the adapters that read streams, by provider (the meter's);
    ``sse``: whether the answer is a stream, when the caller has looked already."""
    if _is_sse(ex) if sse is None else sse:
        return _stream_usage(client, vendor, ex, {} if adapters is None else adapters)
    spec, convert = _protocol(vendor.protocol)
    try:
        raw = loads(ex.response_body)
        fast = _USAGE_AT.get(vendor.protocol)
        if fast is not None and type(raw) is dict:  # the usage object alone, no full response
            usage, named = convert.usage_from(raw.get(fast[0])), raw.get(fast[1]) if fast[1] else None
            # the answer names its model: the request is not parsed to find it
            model = named if isinstance(named, str) and named else _requested(ex) or ""
        else:
            model = _requested(ex) or ""
            resp = convert.from_response(raw, vendor.provider, **({} if spec.names_model else {"model": model}))
            usage, model = resp.usage, resp.model or model
    except (ValueError, TypeError, KeyError, AttributeError, errors.UnillmError):
        return None
    return (model, usage) if usage is not None and model else None


def _stream_usage(client: Any, vendor: Vendor, ex: Exchange, adapters: dict[str, Any]) -> tuple[str, Any] | None:
    adapter = adapters.get(vendor.provider)
    if adapter is None:
        adapter = adapters[vendor.provider] = _protocol(vendor.protocol)[0].adapter_class()(
            client.providers[vendor.provider])
    model = _requested(ex) or ""
    state = adapter.stream_state(model)
    for event in sse_events(ex.response_body):
        model = model or _event_model(event)
        state.feed(event)
    usage = state.reported()[0]
    if usage is None and model and vendor.protocol == "openai":
        usage = _counted(client, vendor, ex, model, state)
    return (model, usage) if usage is not None and model else None


@functools.cache
def _protocol(protocol: str) -> tuple[Any, Any]:
    """A protocol's registered spec and its converter module (looked up once)."""
    from ..adapters import registry
    spec = registry.get(protocol)
    return spec, spec.converter_module()


#: where each built-in protocol's JSON answer keeps its usage object and its model name
_USAGE_AT: Mapping[str, tuple[str, str | None]] = {
    "openai": ("usage", "model"), "anthropic": ("usage", "model"), "google": ("usageMetadata", "modelVersion"),
    "cohere": ("usage", None)}


def _counted(client: Any, vendor: Vendor, ex: Exchange, model: str, state: Any) -> Any:
    """Usage counted with tiktoken for an OpenAI-protocol stream sent without
    ``stream_options.include_usage`` (marked ``tiktoken`` or ``estimate``, as chat() marks it)."""
    from ..tokens import count_usage
    from ..types import build_request
    body = ex.request_json()
    if not isinstance(body, Mapping) or not isinstance(body.get("messages"), list):
        return None
    text = "".join(_delta_text(e) for e in sse_events(ex.response_body))
    try:
        request = build_request(model, body["messages"], {}, drop_params=True)
    except errors.UnillmError:
        return None
    return count_usage(request, text, model, client.providers[vendor.provider])


def _delta_text(event: Mapping[str, Any]) -> str:
    out = []
    for choice in event.get("choices") or ():
        delta = choice.get("delta") if isinstance(choice, Mapping) else None
        if isinstance(delta, Mapping):
            out.append(delta.get("content") or "")
            for call in delta.get("tool_calls") or ():
                fn = call.get("function") if isinstance(call, Mapping) else None
                if isinstance(fn, Mapping):
                    out.append((fn.get("name") or "") + (fn.get("arguments") or ""))
    return "".join(x for x in out if isinstance(x, str))


def vendor_worst(client: Any, vendor: Vendor, ex: Exchange) -> Any:
    """A true upper bound of a raw vendor request: every byte of the body a prompt token
    (a token covers at least one byte), each image its largest token count, and the output
    at the request's cap, else the model's documented maximum."""
    from ..budgets import Worst
    from ..images import image_tokens
    from ..pipeline.admission import DEFAULT_MODEL_MAX
    body = ex.request_json()
    model = _requested(ex) or ""
    images = [url for url in _image_urls(body)]
    prompt = len(ex.request_body) + sum(image_tokens(u, None, model, vendor.protocol) for u in images)
    try:
        price = client.pricebook.price(vendor.provider, model, _now())
    except errors.MissingPriceError:
        price = None
    cap = _max_tokens(body)
    model_max = (price.max_output_tokens if price is not None else None) or DEFAULT_MODEL_MAX
    return Worst.of(price, prompt, exact=True, max_tokens=cap if cap is not None else model_max,
                    model_max=model_max)


def sse_events(body: bytes) -> Iterator[dict[str, Any]]:
    """The JSON ``data:`` payloads of a server-sent-events body (``[DONE]`` and others skipped)."""
    for frame in body.replace(b"\r\n", b"\n").split(b"\n\n"):
        data = b"\n".join(line[5:].lstrip() for line in frame.split(b"\n") if line.startswith(b"data:"))
        if not data or data == b"[DONE]":
            continue
        try:
            event = loads(data)
        except ValueError:
            continue
        if isinstance(event, dict):
            yield event


_SCAN = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]  # typeshed: its context is a decoder
_SPACE = re.compile(r"[ \t\n\r]*")


def loads(body: bytes) -> Any:
    """``json.loads(body)`` (the same value, the same errors: `ValueError`s), a third
    cheaper for the UTF-8 object every answer and event is: its C scanner called directly,
    without the encoding sniff and the two Python layers ``loads`` puts around it."""
    if body[:1] != b"{" or body[1:2] == b"\x00":  # anything else (UTF-16, a BOM, a list...): as json does
        return json.loads(body)
    text = body.decode("utf-8", "surrogatepass")
    try:
        value, end = _SCAN(text, 0)
    except StopIteration as exc:
        raise json.JSONDecodeError("Expecting value", text, exc.value) from None
    if end != len(text) and _SPACE.match(text, end).end() != len(text):  # type: ignore[union-attr]
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def _is_sse(ex: Exchange) -> bool:
    return ex.header("content-type").startswith("text/event-stream")


def _requested(ex: Exchange) -> str | None:
    """The model the request names: its body's top-level ``model``, else (Gemini) its path's."""
    model = _body_model(ex.request_body) if not ex.parsed and "/models/" not in ex.path else ...
    if model is ...:  # not found by the scan: the body parsed
        body = ex.request_json()
        model = body.get("model") if isinstance(body, Mapping) else None
    if isinstance(model, str) and model:
        return model
    if "/models/" in ex.path:  # Gemini: .../models/{model}:generateContent
        return ex.path.rsplit("/models/", 1)[1].split(":", 1)[0] or None
    return None


_MODEL_KEY = b'"model"'
_MODEL_VALUE = re.compile(rb'"model"[ \t\n\r]*:[ \t\n\r]*"((?:[^"\\]|\\.)*)"')
#: a key and a plain value (a string without escapes, a number, true, false, null): no object in it
_PLAIN_PAIR = rb'[ \t\n\r]*"[^"\\]*"[ \t\n\r]*:[ \t\n\r]*(?:"[^"\\]*"|-?[0-9][0-9.eE+-]*|true|false|null)[ \t\n\r]*'
#: from a value to the end of the body: plain pairs, then the object's closing brace
_CLOSES = re.compile(rb'[ \t\n\r]*(?:,' + _PLAIN_PAIR + rb')*\}[ \t\n\r]*')


def _body_model(body: bytes) -> Any:
    """A JSON object's top-level ``"model": "..."`` read without parsing the body (a prompt
    can be megabytes), or ``...`` when that cannot be told for sure (then it is parsed).

    Sure means: ``"model"`` occurs once in the body, its opening quote not escaped (inside
    a JSON string a quote is escaped, so this is a key), its value is a string, and the key
    is the top-level object's: no other object opens before it, or only plain pairs (no
    object or array in them) follow its value to the object's end (an SDK that writes its
    keys in order puts ``model`` first or last, or, as openai's does, after ``messages``
    and before the scalar options such as ``max_tokens``)."""
    at = body.find(_MODEL_KEY)
    if at < 0 or body.find(_MODEL_KEY, at + 1) >= 0 or body[:1] != b"{" or body[at - 1:at] == b"\\":
        return ...
    m = _MODEL_VALUE.match(body, at)
    if m is None or not (body.count(b"{", 0, at) == 1 or _CLOSES.fullmatch(body, m.end()) is not None):
        return ...
    value = m.group(1)
    try:
        return json.loads(b'"' + value + b'"') if b"\\" in value else value.decode("utf-8")
    except ValueError:
        return ...


def _event_model(event: Mapping[str, Any]) -> str:
    for value in (event.get("model"), (event.get("message") or {}).get("model") if isinstance(
            event.get("message"), Mapping) else None, event.get("modelVersion")):
        if isinstance(value, str) and value:
            return value
    return ""


def _max_tokens(body: Any) -> int | None:
    if not isinstance(body, Mapping):
        return None
    config = body.get("generationConfig") or body.get("generation_config") or {}
    for value in (body.get("max_completion_tokens"), body.get("max_tokens"), body.get("max_output_tokens"),
                  config.get("maxOutputTokens") if isinstance(config, Mapping) else None):
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
    return None


def _image_urls(doc: Any) -> Iterator[str]:
    """Image references anywhere in a request body (OpenAI ``image_url``, Anthropic ``source``)."""
    if isinstance(doc, Mapping):
        url = doc.get("image_url")
        if isinstance(url, Mapping):
            url = url.get("url")
        if isinstance(url, str):
            yield url
        source = doc.get("source")
        if doc.get("type") == "image" and isinstance(source, Mapping):
            data = source.get("data")
            yield (f"data:{source.get('media_type', 'image/png')};base64,{data}" if isinstance(data, str)
                   else str(source.get("url", "")))
        for value in doc.values():
            yield from _image_urls(value)
    elif isinstance(doc, list):
        for value in doc:
            yield from _image_urls(value)


def _names(target: Vendor | ApiSpec, ex: Exchange) -> tuple[str, str]:
    if isinstance(target, ApiSpec):
        return target.provider, target.endpoint
    return target.provider, _requested(ex) or "unknown"


def _book_units(units: Mapping[str, Decimal]) -> dict[str, Decimal]:
    from ..pricing import UNITS
    out = {k: v for k, v in units.items() if k in UNITS}
    if "minutes" not in out and "seconds" in units and "minutes" in UNITS:
        out["minutes"] = units["seconds"] / 60
    return out


def _safe_url(url: str) -> str:
    """A URL without its query (keys travel there: Gemini's ``?key=``)."""
    return url.split("?", 1)[0]


def _now() -> datetime:
    return datetime.now(timezone.utc)
