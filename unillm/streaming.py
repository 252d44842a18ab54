"""Streams handed to the user: iterate chunks; when the stream ends, is closed early
or breaks, the call is finished exactly once (usage counted, cost priced, recorded).

``ChatStream`` (sync) and ``AsyncChatStream`` share `Accumulator`, which folds
OpenAI-shaped chunks into the final `ChatResponse`; only the iteration differs.
A stream still open at its ``deadline`` (the ``stream_deadline`` setting) is cut at
the next chunk: the source is closed, the call recorded as partial, and
`unillm.errors.TimeoutError` raised.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from . import errors
from .types import BUCKETS, ChatResponse, Choice, FunctionCall, ResponseMessage, StreamChunk, ToolCall, Usage

if TYPE_CHECKING:
    from typing_extensions import Self

#: what a vendor has reported so far: its usage figures, and which buckets of them are its own
#: figures for the call (the rest are still to be counted)
Reported = tuple[Usage | None, frozenset[str]]
NOTHING_REPORTED: Reported = (None, frozenset())
ALL_BUCKETS = frozenset(BUCKETS)


class StreamReport(Protocol):
    """What `VendorStream` needs of an adapter's stream state."""

    def reported(self) -> Reported: ...


class VendorStream:
    """An adapter's stream: its chunks, and what the vendor has said so far.

    ``state`` is the adapter's stream state (its converter's ``StreamState``): ``reported()``
    gives the usage figures received, even when the stream is cut before its last chunk, and
    ``complete`` is True once the vendor signalled the end (a finish reason or stop event).
    Closing it closes the adapter's generator, which closes the SDK stream.
    """

    __slots__ = ("_chunks", "state")

    def __init__(self, chunks: Iterator[StreamChunk], state: StreamReport) -> None:
        self._chunks, self.state = chunks, state

    def __iter__(self) -> Iterator[StreamChunk]:
        return self

    def __next__(self) -> StreamChunk:
        return next(self._chunks)

    def close(self) -> None:
        self._chunks.close()  # type: ignore[attr-defined]

    def reported(self) -> Reported:
        return self.state.reported()


class AsyncVendorStream:
    """`VendorStream` for ``astream``."""

    __slots__ = ("_chunks", "state")

    def __init__(self, chunks: AsyncIterator[StreamChunk], state: StreamReport) -> None:
        self._chunks, self.state = chunks, state

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        return self

    async def __anext__(self) -> StreamChunk:
        return await self._chunks.__anext__()

    async def aclose(self) -> None:
        await self._chunks.aclose()  # type: ignore[attr-defined]

    def reported(self) -> Reported:
        return self.state.reported()


class Accumulator:
    """Folds chunks into one response. Usage is taken from the last chunk that carries it;
    ``source`` (the adapter's `VendorStream`) tells what the vendor reported before a cut."""

    __slots__ = ("id", "model", "provider", "created", "text", "tools", "finish_reason", "usage",
                 "first_at", "chunks", "source")

    def __init__(self, provider: str, model: str, source: Any = None) -> None:
        self.id, self.model, self.provider, self.created = "", model, provider, int(time.time())
        self.text: list[str] = []
        self.tools: dict[int, dict[str, Any]] = {}
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.first_at: float | None = None
        self.chunks: list[StreamChunk] = []  # kept for cache replay
        self.source = source

    def reported(self) -> Reported:
        """The vendor's usage figures received so far (an adapter stream without a state: none)."""
        reported = getattr(self.source, "reported", None)
        return reported() if reported is not None else NOTHING_REPORTED

    def add(self, chunk: StreamChunk) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self.chunks.append(chunk)
        self.id = self.id or chunk.id
        if chunk.model:
            self.model = chunk.model
        if chunk.usage is not None:
            self.usage = chunk.usage  # cumulative when repeated: the last one wins, never summed
        for choice in chunk.choices:
            delta = choice.delta
            if delta.content:
                self.text.append(delta.content)
            for tc in delta.tool_calls or ():
                slot = self.tools.setdefault(tc.index, {"id": None, "name": "", "arguments": []})
                if tc.id:
                    slot["id"] = tc.id
                fn = tc.function or {}
                if fn.get("name"):
                    slot["name"] = fn["name"]
                if fn.get("arguments"):
                    slot["arguments"].append(fn["arguments"])
            if choice.finish_reason:
                self.finish_reason = choice.finish_reason

    def content(self) -> str:
        return "".join(self.text)

    def tool_calls(self) -> list[ToolCall] | None:
        if not self.tools:
            return None
        return [ToolCall(id=slot["id"] or f"call_{i}", function=FunctionCall(
                    name=slot["name"], arguments="".join(slot["arguments"]) or "{}"))
                for i, slot in sorted(self.tools.items())]

    def response(self) -> ChatResponse:
        text = self.content()
        return ChatResponse(
            id=self.id or "stream", created=self.created, model=self.model, provider=self.provider,
            choices=[Choice(message=ResponseMessage(content=text or None, tool_calls=self.tool_calls()),
                            finish_reason=self.finish_reason)],
            usage=self.usage)


# finish(acc, error) -> the final ChatResponse (usage filled, cost priced, recorded)
Finisher = Callable[[Accumulator, BaseException | None], ChatResponse]
#: ``await offload(fn, *args)``: ``fn(*args)`` off the event loop (a store's `arun`)
Offloader = Callable[..., Awaitable[Any]]


class _StreamBase:
    def __init__(self, acc: Accumulator, finish: Finisher, deadline: float | None = None) -> None:
        self._acc = acc
        self._finish = finish
        self._done = False
        self._deadline = deadline  # time.perf_counter() value; None: no limit
        self.response: ChatResponse | None = None
        """The whole answer, available once the stream has ended (or was closed)."""

    @property
    def usage(self) -> Usage | None:
        return self.response.usage if self.response else None

    @property
    def cost(self) -> Any:
        return self.response.cost if self.response else None

    def _end(self, error: BaseException | None) -> None:
        if not self._done:
            self._done = True
            self.response = self._finish(self._acc, error)

    def _overdue(self) -> errors.TimeoutError | None:
        if self._deadline is None or time.perf_counter() <= self._deadline:
            return None
        return errors.TimeoutError("the stream was still open at its deadline (stream_deadline); "
                                   "it was closed and recorded as partial",
                                   provider=self._acc.provider, model=self._acc.model)


class ChatStream(_StreamBase):
    """Iterate for `StreamChunk`s. ``close()`` (or leaving a ``with`` block) ends it early;
    the partial answer is still counted and recorded. ``.response`` once done."""

    def __init__(self, chunks: Iterator[StreamChunk], acc: Accumulator, finish: Finisher,
                 translate: Callable[[BaseException], BaseException], deadline: float | None = None) -> None:
        super().__init__(acc, finish, deadline)
        self._chunks = chunks
        self._translate = translate

    def __iter__(self) -> Iterator[StreamChunk]:
        return self

    def __next__(self) -> StreamChunk:
        if self._done:
            raise StopIteration
        try:
            chunk = next(self._chunks)
        except StopIteration:
            self._end(None)
            raise
        except BaseException as exc:
            err = self._translate(exc)
            self._close_source()
            self._end(err)
            if err is exc:
                raise
            raise err from exc
        self._acc.add(chunk)
        late = self._overdue()
        if late is not None:
            self._close_source()
            self._end(late)
            raise late
        return chunk

    def _close_source(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            close()

    def close(self) -> None:
        """Stop reading, release the connection, record what was received."""
        if not self._done:
            self._close_source()
            self._end(None)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:  # a stream dropped mid-way is still recorded
        try:
            self.close()
        except Exception:  # noqa: BLE001, S110 - nothing can be raised from __del__
            pass


class AsyncChatStream(_StreamBase):
    """``async for`` over `StreamChunk`s; ``await aclose()`` ends it early."""

    def __init__(self, chunks: AsyncIterator[StreamChunk], acc: Accumulator, finish: Finisher,
                 translate: Callable[[BaseException], BaseException], deadline: float | None = None,
                 offload: Offloader | None = None) -> None:
        super().__init__(acc, finish, deadline)
        self._chunks = chunks
        self._translate = translate
        self._offload = offload  # runs `finish` (a ledger row) off the loop

    async def _aend(self, error: BaseException | None) -> None:
        if self._done:
            return
        if self._offload is None:
            return self._end(error)
        self._done = True
        self.response = await self._offload(self._finish, self._acc, error)

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        return self

    async def __anext__(self) -> StreamChunk:
        if self._done:
            raise StopAsyncIteration
        try:
            chunk = await self._chunks.__anext__()
        except StopAsyncIteration:
            await self._aend(None)
            raise
        except BaseException as exc:
            err = self._translate(exc)
            await self._close_source()
            await self._aend(err)
            if err is exc:
                raise
            raise err from exc
        self._acc.add(chunk)
        late = self._overdue()
        if late is not None:
            await self._close_source()
            await self._aend(late)
            raise late
        return chunk

    async def _close_source(self) -> None:
        aclose = getattr(self._chunks, "aclose", None)
        if aclose is not None:
            await aclose()

    async def aclose(self) -> None:
        if not self._done:
            await self._close_source()
            await self._aend(None)

    async def __aenter__(self) -> Self:
        return self

    def __del__(self) -> None:
        # dropped without being read to the end or closed: still recorded (and its budget
        # hold released); the connection goes with the garbage-collected SDK stream
        try:
            self._end(None)
        except Exception:  # noqa: BLE001, S110 - nothing can be raised from __del__
            pass

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


# ── plumbing the Client uses to open streams and replay cached ones ─────────

def first_chunk(gen: Any) -> tuple[Any, Any]:
    try:
        return gen, next(gen)
    except StopIteration:
        return gen, None
    except BaseException:
        gen.close()
        raise


async def afirst_chunk(gen: Any) -> tuple[Any, Any]:
    try:
        return gen, await gen.__anext__()
    except StopAsyncIteration:
        return gen, None
    except BaseException:
        await gen.aclose()
        raise


def prepend(first: Any, gen: Any) -> Any:
    try:
        if first is not None:
            yield first
        yield from gen
    finally:
        gen.close()


async def aiter_list(items: list[Any]) -> Any:
    for item in items:
        yield item


async def aprepend(first: Any, gen: Any) -> Any:
    try:
        if first is not None:
            yield first
        async for chunk in gen:
            yield chunk
    finally:
        await gen.aclose()
