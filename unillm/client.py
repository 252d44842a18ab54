"""`Client`: one call pipeline over every vendor, sync and async.

``chat``/``achat`` read like DESIGN.md's steps; each step is a call into the
module that owns it. Steps that do no I/O are shared by both forms::

    1 request   validate (ChatRequest)          -> _prepare
    2 resolve   model string -> ModelRef         -> _prepare
    4 estimate  price known before sending       -> _prepare
    7 call      adapter, retries (tenacity)      -> _call_with_retries / _acall_with_retries
    8 usage     vendor's, else counted           -> _finish
    9 cost      PriceBook                        -> _finish
   10 settle    ledger row                       -> _finish
   12 return    ChatResponse / ChatStream
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from . import errors
from .adapters.base import Adapter
from .config import Settings, load_settings
from .profiles import ModelRef, ProviderSettings, Resolver, build_settings, load_adapter_class
from .streaming import Accumulator, AsyncChatStream, ChatStream
from .types import REQUEST_PARAMS, ChatRequest, ChatResponse, Usage

T = TypeVar("T")
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class _Call:
    """Everything one call carries through the pipeline."""

    __slots__ = ("request", "ref", "adapter", "tags", "requested_model", "t0", "at", "stream")

    def __init__(self, request: ChatRequest, ref: ModelRef, adapter: Adapter, tags: dict[str, str],
                 requested_model: str, at: datetime, stream: bool) -> None:
        self.request, self.ref, self.adapter, self.tags = request, ref, adapter, tags
        self.requested_model, self.at, self.stream = requested_model, at, stream
        self.t0 = time.perf_counter()


class Client:
    """One client for every configured vendor.

    ``Client(config="unillm.toml", providers={...}, ...)``: keyword arguments take
    the names of unillm.toml's keys and win over the file. ``clock`` and ``sleep``
    are injectable for tests (time windows, periods, backoff).
    """

    def __init__(self, config: str | Path | Mapping[str, Any] | Settings | None = None, *,
                 clock: Clock | None = None, sleep: Callable[[float], None] | None = None,
                 asleep: Callable[[float], Awaitable[None]] | None = None,
                 **settings: Any) -> None:
        if isinstance(config, Settings):
            self.settings = config.model_copy(update=settings) if settings else config
        elif isinstance(config, Mapping):
            self.settings = load_settings(None, **{**config, **settings})
        else:
            self.settings = load_settings(config, **settings)
        self.providers: dict[str, ProviderSettings] = build_settings(
            self.settings.providers, source=self.settings.source)
        self._resolver = Resolver(self.providers, self.settings.aliases)
        self._adapters: dict[str, Adapter] = {}
        self._clock = _utcnow if clock is None else clock
        self._sleep = time.sleep if sleep is None else sleep
        self._asleep = asyncio.sleep if asleep is None else asleep
        self._pricebook: Any = None

    @classmethod
    def from_config(cls, path: str | Path, **overrides: Any) -> Client:
        """Read ``unillm.toml``; keyword arguments win over the file."""
        return cls(path, **overrides)

    # ── public API ───────────────────────────────────────────────────────────

    def chat(self, model: str, messages: Iterable[Any], *, stream: bool = False,
             tags: Mapping[str, str] | None = None, **params: Any) -> Any:
        """Send a chat request; returns a `ChatResponse`, or a `ChatStream` when ``stream=True``."""
        call = self._prepare(model, messages, params, tags, stream)
        if stream:
            return self._open_stream(call)
        resp = self._call_with_retries(call, lambda: call.adapter.complete(call.request, call.ref.model))
        return self._finish(call, resp)

    async def achat(self, model: str, messages: Iterable[Any], *, stream: bool = False,
                    tags: Mapping[str, str] | None = None, **params: Any) -> Any:
        """Async `chat`: awaits a `ChatResponse`, or an `AsyncChatStream` when ``stream=True``."""
        call = self._prepare(model, messages, params, tags, stream)
        if stream:
            return await self._aopen_stream(call)
        resp = await self._acall_with_retries(
            call, lambda: call.adapter.acomplete(call.request, call.ref.model))
        return self._finish(call, resp)

    def resolve(self, model: str) -> ModelRef:
        """Where ``model`` leads (provider, vendor model id, wire protocol)."""
        return self._resolver.resolve(model)

    @property
    def pricebook(self) -> Any:
        """The price book in force: bundled pricing.toml merged with ``pricing=``."""
        if self._pricebook is None:
            from .pricing import PriceBook
            self._pricebook = PriceBook.load(self.settings.pricing)
        return self._pricebook

    def close(self) -> None:
        for adapter in self._adapters.values():
            adapter.close()

    async def aclose(self) -> None:
        for adapter in self._adapters.values():
            await adapter.aclose()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    # ── steps shared by sync and async (no I/O) ──────────────────────────────

    def _prepare(self, model: str, messages: Iterable[Any], params: dict[str, Any],
                 tags: Mapping[str, str] | None, stream: bool) -> _Call:
        request = self._build_request(model, messages, params)
        ref = self._resolver.resolve(model)
        adapter = self._adapter(ref.provider)
        all_tags = {**self.settings.tags, **tags} if tags else self.settings.tags
        if self.settings.on_missing_price == "raise":
            # a call we could not price is refused before it is paid for
            self.pricebook.price(ref.provider, ref.model)
        return _Call(request, ref, adapter, dict(all_tags), model, self._clock(), stream)

    def _build_request(self, model: str, messages: Iterable[Any], params: dict[str, Any]) -> ChatRequest:
        unknown = params.keys() - REQUEST_PARAMS
        if unknown:
            name = sorted(unknown)[0]
            close = errors.did_you_mean(name, REQUEST_PARAMS)
            raise errors.InvalidRequestError(
                f"unknown parameter {name!r}" + (f"; did you mean {close[0]!r}?" if close else
                                                  "; pass vendor-specific parameters as extra={...}"),
                param=name)
        params.setdefault("drop_params", self.settings.drop_params)
        fmt = params.get("response_format")
        if isinstance(fmt, type) and issubclass(fmt, BaseModel):
            params["response_model"] = fmt
            params["response_format"] = {"type": "json_schema", "json_schema": {
                "name": fmt.__name__, "schema": fmt.model_json_schema()}}
        if not isinstance(messages, list):
            messages = list(messages) if not isinstance(messages, (str, bytes, Mapping)) else messages
        try:
            return ChatRequest(model=model, messages=messages, **params)
        except ValidationError as exc:
            raise errors.InvalidRequestError(_describe(exc), param=_first_loc(exc)) from None

    def _adapter(self, provider: str) -> Adapter:
        adapter = self._adapters.get(provider)
        if adapter is None:
            settings = self.providers[provider]
            adapter = self._adapters[provider] = load_adapter_class(settings.adapter)(settings)
        return adapter

    def _translate(self, call: _Call, exc: BaseException) -> BaseException:
        """The one boundary where SDK exceptions become unillm's."""
        if isinstance(exc, errors.UnillmError):
            return exc
        translated = call.adapter.translate_error(exc, call.ref.model)
        return translated if translated is not None else exc

    def _backoff(self, err: errors.ProviderError, attempt: int) -> float:
        """Seconds before retry number ``attempt``: Retry-After if given, else exponential + jitter."""
        r = self.settings.retry
        if err.retry_after is not None:
            return err.retry_after
        return min(r.initial * (2 ** (attempt - 1)), r.maximum) + random.uniform(0, r.jitter)

    def _should_retry(self, err: BaseException) -> bool:
        return (isinstance(err, errors.ProviderError) and err.retryable
                and (err.retry_after is None or err.retry_after <= self.settings.retry.max_retry_after))

    def _finish(self, call: _Call, resp: ChatResponse, error: BaseException | None = None) -> ChatResponse:
        """Steps 8-12: usage (counted when missing), cost, structured parse, record."""
        resp.provider = call.ref.provider
        resp.requested_model = call.requested_model
        if resp.usage is None:
            resp.usage = self._count_usage(call, resp)
        resp.cost = self._cost(call, resp.usage)
        if call.request.response_model is not None and error is None:
            _parse_structured(call, resp)
        return resp

    def _count_usage(self, call: _Call, resp: ChatResponse) -> Usage:
        from .tokens import count_usage
        msg = resp.choices[0].message if resp.choices else None
        text = (msg.content or "") if msg else ""
        if msg and msg.tool_calls:
            text += "".join(tc.function.name + tc.function.arguments for tc in msg.tool_calls)
        return count_usage(call.request, text, call.ref.model, self.providers[call.ref.provider])

    def _cost(self, call: _Call, usage: Usage) -> Any:
        try:
            return self.pricebook.cost(call.ref.provider, call.ref.model, usage, at=call.at)
        except errors.MissingPriceError:
            if self.settings.on_missing_price == "raise":
                raise
            return None

    # ── step 7, sync ─────────────────────────────────────────────────────────

    def _call_with_retries(self, call: _Call, attempt: Callable[[], T]) -> T:
        """One attempt, then (only on a retryable error) tenacity for the rest."""
        try:
            return attempt()
        except Exception as exc:
            err = self._translate(call, exc)
            if not (self._should_retry(err) and call.adapter.settings.max_retries):
                _reraise(err, exc)
            first = err
        import tenacity
        self._sleep(self._backoff(first, 1))  # type: ignore[arg-type]
        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(call.adapter.settings.max_retries),
            wait=lambda rs: self._backoff(rs.outcome.exception(), rs.attempt_number + 1),
            retry=tenacity.retry_if_exception(self._should_retry),
            sleep=self._sleep, reraise=True)
        return retrying(self._translated(call, attempt))

    def _translated(self, call: _Call, attempt: Callable[[], T]) -> Callable[[], T]:
        def run() -> T:
            try:
                return attempt()
            except Exception as exc:
                _reraise(self._translate(call, exc), exc)
        return run

    def _open_stream(self, call: _Call) -> ChatStream:
        """Open the stream (first chunk read inside the retry loop) and wrap it."""
        def open_() -> tuple[Any, Any]:
            gen = call.adapter.stream(call.request, call.ref.model)
            try:
                return gen, next(gen)
            except StopIteration:
                return gen, None
            except BaseException:
                gen.close()
                raise
        gen, first = self._call_with_retries(call, open_)
        acc = Accumulator(call.ref.provider, call.ref.model)
        chunks = _prepend(first, gen)
        return ChatStream(chunks, acc, lambda a, e: self._finish_stream(call, a, e),
                          lambda exc: self._translate(call, exc))

    # ── step 7, async ────────────────────────────────────────────────────────

    async def _acall_with_retries(self, call: _Call, attempt: Callable[[], Awaitable[T]]) -> T:
        try:
            return await attempt()
        except Exception as exc:
            err = self._translate(call, exc)
            if not (self._should_retry(err) and call.adapter.settings.max_retries):
                _reraise(err, exc)
            first = err
        import tenacity
        await self._asleep(self._backoff(first, 1))  # type: ignore[arg-type]
        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(call.adapter.settings.max_retries),
            wait=lambda rs: self._backoff(rs.outcome.exception(), rs.attempt_number + 1),
            retry=tenacity.retry_if_exception(self._should_retry),
            sleep=self._asleep, reraise=True)

        async def run() -> T:
            try:
                return await attempt()
            except Exception as exc:
                _reraise(self._translate(call, exc), exc)
        return await retrying(run)

    async def _aopen_stream(self, call: _Call) -> AsyncChatStream:
        async def open_() -> tuple[Any, Any]:
            gen = call.adapter.astream(call.request, call.ref.model)
            try:
                return gen, await gen.__anext__()
            except StopAsyncIteration:
                return gen, None
            except BaseException:
                await gen.aclose()
                raise
        gen, first = await self._acall_with_retries(call, open_)
        acc = Accumulator(call.ref.provider, call.ref.model)
        return AsyncChatStream(_aprepend(first, gen), acc, lambda a, e: self._finish_stream(call, a, e),
                               lambda exc: self._translate(call, exc))

    def _finish_stream(self, call: _Call, acc: Accumulator, error: BaseException | None) -> ChatResponse:
        return self._finish(call, acc.response(), error)


# ── small helpers ────────────────────────────────────────────────────────────

def _reraise(err: BaseException, cause: BaseException) -> Any:
    if err is cause:
        raise cause
    raise err from cause


def _prepend(first: Any, gen: Any) -> Any:
    if first is not None:
        yield first
    try:
        yield from gen
    finally:
        gen.close()


async def _aprepend(first: Any, gen: Any) -> Any:
    try:
        if first is not None:
            yield first
        async for chunk in gen:
            yield chunk
    finally:
        await gen.aclose()


def _parse_structured(call: _Call, resp: ChatResponse) -> None:
    message = resp.choices[0].message if resp.choices else None
    if message is None or not message.content:
        return
    try:
        message.parsed = call.request.response_model.model_validate_json(message.content)
    except ValidationError as exc:
        raise errors.ResponseError(
            f"the answer does not match {call.request.response_model.__name__}: {_describe(exc)}",
            provider=call.ref.provider, model=call.ref.model, body=message.content) from exc


def _first_loc(exc: ValidationError) -> str | None:
    errs = exc.errors()
    return ".".join(str(p) for p in errs[0]["loc"]) if errs else None


def _describe(exc: ValidationError) -> str:
    """One line per problem: where (messages.1.content) and what."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"] if not str(p).endswith("Part"))
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    more = len(exc.errors()) - 5
    return "invalid request: " + "; ".join(parts) + (f" (+{more} more)" if more > 0 else "")
