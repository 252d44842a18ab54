"""The example protocol for `unillm.testing.FakeProvider` (named by the spec's ``fake``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from unillm.testing.fake import Ctx, Reply
from unillm.testing.protocols.base import Protocol

_STOP = {"stop": "end", "length": "limit"}


class ExampleProtocol(Protocol):
    name = "example"

    def matches(self, method: str, path: str) -> bool:
        return method == "POST" and path == "/example/generate"

    def is_stream(self, path: str, query: str, body: Any) -> bool:
        return isinstance(body, dict) and bool(body.get("stream"))

    def _meter(self, reply: Reply, ctx: Ctx) -> dict[str, int] | None:
        u = ctx.usage(reply)
        return None if u is None else {"prompt": u["input_tokens"] + u["cache_read_tokens"],
                                       "completion": u["output_tokens"]}

    def render(self, reply: Reply, ctx: Ctx) -> Any:
        return {"id": f"ex-{ctx.seq}", "model": reply.model or ctx.model, "output": reply.text,
                "stop": _STOP.get(reply.neutral_finish(), "end"), "meter": self._meter(reply, ctx)}

    def render_stream(self, reply: Reply, ctx: Ctx) -> Iterable[Any]:
        for piece in reply.text_pieces():
            yield {"delta": piece}
        yield {"done": True, "stop": _STOP.get(reply.neutral_finish(), "end"), "meter": self._meter(reply, ctx)}

    def render_error(self, reply: Reply, ctx: Ctx) -> Any:
        return {"error": {"message": reply.error or f"HTTP {reply.status}"}}
