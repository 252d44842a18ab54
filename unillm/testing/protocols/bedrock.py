"""FakeProvider: Anthropic on Amazon Bedrock (``/model/{id}/invoke``, ``invoke-with-response-stream``).

The body is Anthropic's Messages body without ``model`` (the path names it) and with
``anthropic_version``; answers are Anthropic's, rendered by `AnthropicProtocol`, naming
the model as Anthropic does (`anthropic_name`), as Bedrock's do. A stream is
not server-sent events but AWS event-stream binary frames (``application/vnd.amazon.eventstream``):
each frame a prelude (total and header lengths, CRC32), string headers (``:event-type: chunk``
...), a JSON payload ``{"bytes": base64(event)}`` and a CRC32 of the whole message. The last
event carries ``amazon-bedrock-invocationMetrics`` as Bedrock adds it. Errors are
``{"message": ...}`` bodies with the status Bedrock uses (429 ThrottlingException ...).
The SigV4 ``authorization`` header the SDK signs with is recorded, not verified.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import struct
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from ..replies import Ctx, Reply
from .anthropic import AnthropicProtocol

if TYPE_CHECKING:
    from ..fake import FakeProvider

_PATH = re.compile(r"^/model/([^/]+)/(invoke|invoke-with-response-stream)$")

_ERRORS = {400: "ValidationException", 403: "AccessDeniedException", 404: "ResourceNotFoundException",
           408: "ModelTimeoutException", 424: "ModelErrorException", 429: "ThrottlingException",
           500: "InternalServerException", 503: "ServiceUnavailableException"}


class BedrockProtocol(AnthropicProtocol):
    name = "bedrock"
    base_path = ""
    stream_content_type = "application/vnd.amazon.eventstream"
    route = _PATH
    stream_suffix = "/invoke-with-response-stream"

    def model(self, path: str, body: Any) -> str:
        return unquote(self.route_group(path, 1))

    def render(self, reply: Reply, ctx: Ctx) -> Any:
        return {**super().render(reply, ctx), "model": reply.model or anthropic_name(ctx.model)}

    def render_stream(self, reply: Reply, ctx: Ctx) -> Iterable[Any]:
        return with_model_name(self._stream(reply, ctx), reply.model or anthropic_name(ctx.model))

    def _stream(self, reply: Reply, ctx: Ctx) -> list[Any]:
        events = list(super().render_stream(reply, ctx))
        usage = ctx.usage(reply)
        for i, (name, data) in enumerate(events):
            if name == "message_stop" and usage is not None:
                metrics = {"inputTokenCount": usage["input_tokens"], "outputTokenCount": usage["output_tokens"],
                           "invocationLatency": 1, "firstByteLatency": 1}
                events[i] = (name, {**data, "amazon-bedrock-invocationMetrics": metrics})
        return events

    def frames(self, events: list[Any]) -> Iterator[bytes]:
        """Each event as a ``chunk`` frame; ``("exception", {"type": "throttlingException",
        "message": ...})`` as the exception frame Bedrock sends when a stream fails midway."""
        for event in events:
            if isinstance(event, tuple) and event[0] == "exception":
                yield message({":message-type": "exception", ":exception-type": event[1]["type"],
                               ":content-type": "application/json"},
                              json.dumps({"message": event[1].get("message", "")}).encode())
                continue
            data = event[1] if isinstance(event, tuple) else event.get("data", event) if isinstance(event, dict) \
                else event
            raw = data.encode() if isinstance(data, str) else json.dumps(data).encode()
            payload = json.dumps({"bytes": base64.b64encode(raw).decode()}).encode()
            yield message({":event-type": "chunk", ":content-type": "application/json",
                           ":message-type": "event"}, payload)

    def render_error(self, reply: Reply, ctx: Ctx) -> Any:
        default = f"FakeProvider: scripted {reply.status} {_ERRORS.get(reply.status, 'Exception')}"
        return {"message": reply.error if isinstance(reply.error, str) else default}

    def client_settings(self, fake: FakeProvider) -> dict[str, Any]:
        """A Bedrock API key (a bearer token), as every protocol's ``api_key``; give
        ``aws_access_key_id`` / ``aws_secret_access_key`` instead (no ``api_key``) for SigV4."""
        return {"base_url": fake.url, "region": "us-east-1", "api_key": fake.api_key}


def anthropic_name(model: str) -> str:
    """Anthropic's name for a cloud model id, as the clouds answer with it:
    ``us.anthropic.claude-sonnet-4-5-20250929-v1:0`` and ``claude-sonnet-4-5@20250929`` are
    ``claude-sonnet-4-5-20250929``."""
    name = re.sub(r"^([a-z]+\.)?anthropic\.", "", model)
    return re.sub(r"-v\d+(:\d+)?$", "", name).replace("@", "-")


def with_model_name(events: Iterable[Any], name: str) -> list[Any]:
    """``message_start`` naming the model as the cloud does."""
    out = []
    for event in events:
        if isinstance(event, tuple) and event[0] == "message_start":
            event = (event[0], {**event[1], "message": {**event[1]["message"], "model": name}})
        out.append(event)
    return out


def message(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message (string headers only)."""
    encoded = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        encoded += struct.pack("!B", len(n)) + n + b"\x07" + struct.pack("!H", len(v)) + v
    total = 12 + len(encoded) + len(payload) + 4
    prelude = struct.pack("!II", total, len(encoded))
    head = prelude + struct.pack("!I", binascii.crc32(prelude)) + encoded + payload
    return head + struct.pack("!I", binascii.crc32(head))
