"""What FakeProvider answers (`Reply`, `ToolCallSpec`) and what a protocol renders it with (`Ctx`).

Apart from `fake` (the server) so that the protocol modules, which `fake` loads, import these
rather than `fake` itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ToolCallSpec:
    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None

    def arguments_json(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


AUTO = "auto"


@dataclass
class Reply:
    """What FakeProvider answers to one request.

    usage: ``"auto"`` (small counts derived from the request), ``None`` (the vendor
    reports no usage at all), or a dict of neutral buckets — ``input_tokens``
    (uncached), ``cache_read_tokens``, ``cache_write_tokens``, ``output_tokens``
    (reasoning included), ``reasoning_tokens`` — which each protocol renders with
    its vendor's semantics (e.g. OpenAI's prompt_tokens includes cached tokens).
    """

    text: str = "Hello from FakeProvider."
    tool_calls: list[ToolCallSpec | dict[str, Any]] | None = None
    usage: dict[str, int] | str | None = AUTO
    finish_reason: str | None = None        # neutral: stop | length | tool_calls; derived when None
    model: str | None = None                # model name to report; defaults to the requested one
    status: int = 200
    error: Any = None                        # error message (str) or a raw error body (dict)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0                       # seconds before the response starts
    chunk_delay: float = 0.0                 # seconds between stream events
    chunk_size: int = 8                      # characters of text per stream delta
    cut_after: int | None = None             # stream: drop the connection after N events
    malformed: bool = False                  # answer 200 with a body that is not JSON
    body: Any = None                         # serve this JSON verbatim (non-stream)
    events: list[Any] | None = None          # serve these SSE events verbatim (stream)
    raw: bytes | None = None                 # serve these bytes verbatim, stream or not (an HTML page)
    content_type: str = "text/html; charset=utf-8"  # of ``raw``

    def tool_call_specs(self) -> list[ToolCallSpec]:
        out = []
        for i, tc in enumerate(self.tool_calls or []):
            spec = tc if isinstance(tc, ToolCallSpec) else ToolCallSpec(**tc)
            if spec.id is None:
                spec = ToolCallSpec(spec.name, spec.arguments, f"call_{i}_{spec.name}")
            out.append(spec)
        return out

    def neutral_finish(self) -> str:
        if self.finish_reason:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"

    def text_pieces(self) -> list[str]:
        n = max(self.chunk_size, 1)
        return [self.text[i:i + n] for i in range(0, len(self.text), n)] if self.text else []


@dataclass
class Ctx:
    """What a protocol module needs to render a reply."""

    protocol: str
    path: str
    body: Any
    model: str
    stream: bool
    seq: int  # request number, for ids

    def auto_usage(self, reply: Reply) -> dict[str, int]:
        """Deterministic small counts: ~1 token per 4 characters, at least 1."""
        prompt = max(len(json.dumps(self.body.get("messages") or self.body.get("contents") or self.body,
                                    default=str)) // 4, 1) if isinstance(self.body, dict) else 1
        out = sum(len(tc.arguments_json()) for tc in reply.tool_call_specs()) + len(reply.text)
        return {"input_tokens": prompt, "output_tokens": max(out // 4, 1)}

    def usage(self, reply: Reply) -> dict[str, int] | None:
        if reply.usage is None:
            return None
        u = self.auto_usage(reply) if reply.usage == AUTO else dict(reply.usage)  # type: ignore[arg-type]
        for k in ("input_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
                  "output_tokens", "reasoning_tokens"):
            u.setdefault(k, 0)
        return u
