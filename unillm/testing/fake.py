"""FakeProvider: a real HTTP server on 127.0.0.1 speaking the vendors' wire protocols (the four
native ones, and Azure OpenAI's, Bedrock's and Vertex AI's), one module per protocol in
`unillm.testing.protocols`.

Point an official SDK at it through ``base_url`` and the SDK's real request and
response code runs, offline. Script what it answers, request by request::

    from unillm.testing import FakeProvider, Reply

    with FakeProvider() as fake:
        fake.queue(Reply(text="hi"), Reply(status=429, headers={"retry-after": "0"}))
        client = Client(providers=fake.providers())
        client.chat(model="gpt-4o-mini", messages=[...])
        fake.requests[-1].json          # what the SDK sent

Replies are vendor-neutral: each protocol module renders one in its vendor's
shape (JSON or SSE). ``Reply.body`` / ``Reply.events`` serve a recorded vendor
payload verbatim (with ``cut_after=N`` the connection drops after N events; a list cut
short ends cleanly), ``Reply.raw`` any bytes (an HTML error page answering 200). Works for sync and async clients alike (the server runs in a
thread); ``async with FakeProvider()`` is accepted too.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from .replies import Ctx, Reply, ToolCallSpec

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["FakeProvider", "Reply", "Recorded", "ToolCallSpec"]


@dataclass
class Recorded:
    """One request FakeProvider received."""

    protocol: str
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    json: Any
    stream: bool
    at: float


def _protocols() -> list[Any]:
    """The FakeProvider protocol of every registered adapter, in registry order (a request
    goes to the first that matches)."""
    from ..adapters import registry
    return [p for p in (s.fake_protocol() for s in registry.specs()) if p is not None]


class FakeProvider:
    """A scriptable LLM vendor on 127.0.0.1, for tests and offline examples."""

    def __init__(self, default: Reply | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 api_key: str = "fake-key") -> None:
        self.default = default or Reply()
        self.api_key = api_key
        self.requests: list[Recorded] = []
        self._queue: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._seq = 0
        self.protocols = _protocols()
        self._server = _Server((host, port), _Handler)
        self._server.fake = self
        self._thread: threading.Thread | None = None

    # ── lifecycle ──
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> Self:
        if self._thread is None:
            self._thread = threading.Thread(target=self._server.serve_forever, name="FakeProvider",
                                            kwargs={"poll_interval": 0.05}, daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    # ── scripting ──
    def queue(self, *replies: Reply) -> FakeProvider:
        """Answer the next requests with these replies, in order; then the default."""
        with self._lock:
            self._queue.extend(replies)
        return self

    def reset(self) -> None:
        with self._lock:
            self._queue.clear()
            self.requests.clear()

    def _next(self) -> tuple[Reply, int]:
        with self._lock:
            self._seq += 1
            return (self._queue.popleft() if self._queue else self.default), self._seq

    # ── wiring a client to it ──
    def base_url(self, protocol: str) -> str:
        """The base_url each SDK needs to reach this server."""
        proto = next((p for p in self.protocols if p.name == protocol), None)
        if proto is None:
            raise ValueError(f"FakeProvider serves no protocol {protocol!r}; it serves "
                             + ", ".join(p.name for p in self.protocols))
        path: str = proto.base_path
        return self.url + path

    def providers(self, *names: str) -> dict[str, dict[str, Any]]:
        """``Client(providers=fake.providers())``: every (or the named) provider points here."""
        from ..profiles import bundled_profiles
        profiles = bundled_profiles()
        chosen = names or tuple(profiles)
        return {n: self.client_settings(profiles[n]["adapter"]) for n in chosen}

    def client_settings(self, protocol: str) -> dict[str, Any]:
        """The provider settings that point a ``protocol`` provider here (base_url, credentials;
        a cloud protocol's region or project too)."""
        self.base_url(protocol)  # a clear error for a protocol it does not serve
        settings: dict[str, Any] = next(p for p in self.protocols if p.name == protocol).client_settings(self)
        return settings


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    fake: FakeProvider

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up (an SDK closing a kept-alive connection) is not an error."""
        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def _handle(self) -> None:
        fake = self.server.fake
        split = urlsplit(self.path)
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = raw.decode("utf-8", "replace")
        proto = next((p for p in fake.protocols if p.matches(self.command, split.path)), None)
        if proto is None:
            self._send_json(404, {"error": {"message": f"FakeProvider: no route for {split.path}"}})
            return
        stream = proto.is_stream(split.path, split.query, body)
        headers = {k.lower(): v for k, v in self.headers.items()}
        fake.requests.append(Recorded(proto.name, self.command, split.path, parse_qs(split.query),
                                      headers, body, stream, time.time()))
        reply, seq = fake._next()
        ctx = Ctx(proto.name, split.path, body, proto.model(split.path, body), stream, seq)
        if reply.delay:
            time.sleep(reply.delay)
        if reply.status >= 400:
            err = reply.error if isinstance(reply.error, dict) else proto.render_error(reply, ctx)
            self._send_json(reply.status, err, reply.headers)
        elif reply.raw is not None:
            self._send_bytes(reply.status, reply.raw, reply.content_type, reply.headers)
        elif reply.malformed:
            self._send_bytes(200, b'{"id": "broken", "choices": [', "application/json", reply.headers)
        elif stream:
            events = reply.events if reply.events is not None else list(proto.render_stream(reply, ctx))
            self._send_sse(events, reply, proto)
        else:
            payload = reply.body if reply.body is not None else proto.render(reply, ctx)
            self._send_json(200, payload, reply.headers)

    # ── writing ──
    def _send_bytes(self, status: int, data: bytes, ctype: str, headers: dict[str, str] | None) -> None:
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        try:
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (a timeout test, say)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_sse(self, events: list[Any], reply: Reply, proto: Any) -> None:
        self.send_response(200)
        self.send_header("content-type", proto.stream_content_type)
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cache-control", "no-cache")
        for k, v in reply.headers.items():
            self.send_header(k, v)
        self.end_headers()
        try:
            for i, event in enumerate(proto.frames(events) or _sse_frames(events)):
                if reply.cut_after is not None and i >= reply.cut_after:
                    # drop the connection without the terminating chunk: a truncated stream
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if reply.chunk_delay:
                    time.sleep(reply.chunk_delay)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client closed the stream early: that is allowed


def _sse_frames(events: list[Any]) -> Iterator[bytes]:
    """SSE frames from ``(event_name, data)`` pairs, ``{"event":..,"data":..}`` or bare data."""
    for ev in events:
        name = None
        if isinstance(ev, tuple):
            name, data = ev
        elif isinstance(ev, dict) and set(ev) <= {"event", "data"} and "data" in ev:
            name, data = ev.get("event"), ev["data"]
        else:
            data = ev
        text = data if isinstance(data, str) else json.dumps(data)
        frame = (f"event: {name}\n" if name else "") + f"data: {text}\n\n"
        yield frame.encode()
