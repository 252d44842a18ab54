"""uvicorn's HTTP/1.1 protocols with a header read timeout (slow clients are cut off).

`GuardedHttpToolsProtocol` (uvicorn's httptools protocol: llhttp, in C) serves by default;
`GuardedH11Protocol` when httptools is not installed. Both carry what this module describes,
through one mixin (`_Guards`); the httptools one also bounds a head still arriving (`MAX_HEAD`),
as h11 does by itself.

uvicorn bounds the *size* of request headers (h11: 16 KiB) and closes idle
keep-alive connections, but a client that sends its headers one byte every few
seconds keeps a connection (and its memory) forever: every byte resets the
keep-alive timer. `GuardedH11Protocol` gives each request ``header_timeout`` seconds
to deliver its complete head, counted from the connection's opening (its first request)
or from the first byte of the head (on a kept-alive connection); then it answers ``408``
(when part of a request arrived) or simply closes, and drops the connection. Between
requests, a kept-alive connection idles as long as uvicorn's ``timeout_keep_alive``
(``[server] keep_alive_seconds``), longer than any client pool keeps an idle connection,
so a client never sends a request on a connection the gateway is closing. A head that
arrives in one piece (the usual case) arms no timer at all.
The body's own deadline is `unillm.server.limits.Limits`; each request's scope tells it
(`BODY_RECEIVED`) when the whole body has arrived, so a body that is already here (nearly
every one, by the time the app reads it) is not timed.

It also sends each response's head and the start of its body in one write: uvicorn
writes the head as soon as the app starts the response, so every answer left as two
TCP segments (two ``send`` syscalls here, two wake-ups of the client's reader).
`OneWrite` holds the head until the body's first write, which under Starlette comes in
the same step of the event loop; a head whose body is late still leaves on the next
step (``call_soon``), so nothing ever waits on it.

Two per-request costs of uvicorn's protocol are made per-connection instead (the same
behaviour, `bench/bench_gateway.py`):

* the keep-alive timer: uvicorn arms a fresh ``call_later(timeout_keep_alive)`` after every
  response and cancels it on the next request's first bytes, so a busy connection leaves
  one cancelled handle in the loop's timer heap per request (120 s deep at the gateway's
  keep-alive: every timer operation of the loop pays for them). Here one timer per
  connection is armed for the moment the connection would have idled ``timeout_keep_alive``
  seconds; when it fires on a connection that was busy since, it is re-armed for the new
  moment (or not at all while a request is in flight);
* the upgrade check: uvicorn scans every request header for ``Connection: upgrade``;
  a request without an ``Upgrade`` header (every one the gateway serves) skips the scan.

`GatewayConfig` is uvicorn's ``Config`` carrying that timeout; the classes are
module-level so ``--workers`` can pickle them into worker processes.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

HttpToolsProtocol: Any
try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # httptools is not installed: h11 serves
    HttpToolsProtocol = None

from .limits import BODY_RECEIVED

_BODY = b'{"error":{"message":"the request headers did not arrive in time ([server] header_timeout)",' \
        b'"type":"invalid_request_error","param":null,"code":"request_timeout"}}'
TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
                    b"connection: close\r\ncontent-length: " + str(len(_BODY)).encode() + b"\r\n\r\n" + _BODY)


class OneWrite:
    """A transport that joins a response's head to the first write after it."""

    def __init__(self, transport: Any, loop: Any) -> None:
        self._transport, self._loop = transport, loop
        self._head: bytes | None = None
        self._started = False

    def write(self, data: bytes) -> None:
        if not self._started:  # the head: held until the body's first bytes
            self._started = True
            self._head = data
            self._loop.call_soon(self.flush)
            return
        if self._head is not None:
            data, self._head = self._head + data, None
        if data:
            self._transport.write(data)

    def flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            if not self._transport.is_closing():
                self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, ...
        return getattr(self._transport, name)


#: the longest request head read before the connection is refused (h11's own bound, 16 KiB)
MAX_HEAD = 16 * 1024
_TOO_LARGE = b'{"error":{"message":"the request head is too large","type":"invalid_request_error",' \
             b'"param":null,"code":"request_header_fields_too_large"}}'
TOO_LARGE_RESPONSE = (b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
                      b"connection: close\r\ncontent-length: " + str(len(_TOO_LARGE)).encode() + b"\r\n\r\n"
                      + _TOO_LARGE)


def default_protocol() -> type:
    """`GuardedHttpToolsProtocol` when httptools is installed (``unillm[server]`` pulls it), else
    `GuardedH11Protocol`."""
    return GuardedH11Protocol if HttpToolsProtocol is None else GuardedHttpToolsProtocol


def named_protocol(name: str) -> type:
    """The guarded protocol ``http = name`` picks: ``auto`` (`default_protocol`), ``h11`` or
    ``httptools``."""
    if name == "auto":
        return default_protocol()
    if name == "h11":
        return GuardedH11Protocol
    if HttpToolsProtocol is None:
        from .. import errors
        raise errors.ConfigError("http = 'httptools' needs the httptools package: pip install 'unillm[server]'")
    return GuardedHttpToolsProtocol


class GatewayConfig(uvicorn.Config):
    """uvicorn's Config plus ``header_timeout`` (seconds), served by `default_protocol`."""

    def __init__(self, app: Any, *, header_timeout: float = 10.0, **options: Any) -> None:
        options.setdefault("http", default_protocol())
        super().__init__(app, **options)
        self.header_timeout = header_timeout


class _Guards:
    """What both protocols add to uvicorn's: the head's deadline, one keep-alive timer per
    connection, `OneWrite` and the scope's `BODY_RECEIVED`. A mixin over uvicorn's protocol
    classes, whose attributes (``loop``, ``transport``, ``cycle``, ...) it uses."""

    loop: Any
    transport: Any
    cycle: Any
    server_state: Any
    flow: Any
    timeout_keep_alive: int
    timeout_keep_alive_task: Any

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)  # type: ignore[call-arg]
        self.header_timeout = float(getattr(config, "header_timeout", 10.0))
        self._head_timer: Any = None
        self._idle_since: float | None = None  # loop.time() the last response ended; None: busy

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)  # type: ignore[misc]
        if self.timeout_keep_alive_task is not None:
            self.timeout_keep_alive_task.cancel()
            self.timeout_keep_alive_task = None

    # ── keep-alive: one timer per connection, not one per request ──
    def _unset_keepalive_if_required(self) -> None:
        self._idle_since = None  # bytes arrived: busy (an armed timer will find it so)

    def _idle(self) -> None:
        """A response ended and no request waits: arm the keep-alive timer unless one is armed."""
        self._idle_since = self.loop.time()
        if self.timeout_keep_alive_task is None:
            self.timeout_keep_alive_task = self.loop.call_at(self._idle_since + self.timeout_keep_alive,
                                                             self._keep_alive_due)

    def _keep_alive_due(self) -> None:
        self.timeout_keep_alive_task = None
        if self._idle_since is None:
            return  # a request is in flight: its response arms the timer again
        due = self._idle_since + self.timeout_keep_alive
        if self.loop.time() >= due:
            self.timeout_keep_alive_handler()  # type: ignore[attr-defined]
        else:  # busy since the timer was armed: idle from a later moment
            self.timeout_keep_alive_task = self.loop.call_at(due, self._keep_alive_due)

    def _wrap(self, cycle: Any) -> None:
        """A new request's cycle (its task has not run yet): one write for head and body, and
        the scope's `BODY_RECEIVED`."""
        if cycle is not None and not isinstance(cycle.transport, OneWrite):
            cycle.transport = cast("asyncio.Transport", OneWrite(cycle.transport, self.loop))
            extensions = cast("dict[str, Any]", cycle.scope.setdefault("extensions", {}))
            extensions[BODY_RECEIVED] = self._body_received

    def _body_received(self) -> int | None:
        """The request body bytes the app has not read yet, once the whole body has arrived
        (None before). A bound method, not a closure over the cycle: the scope holding it
        then makes no reference cycle with the cycle, which holds the scope."""
        cycle = self.cycle
        return None if cycle is None or cycle.more_body else len(cycle.body)

    # ── the head's deadline ──
    def _partial(self) -> bool:
        """Part of a request head has arrived, not all of it."""
        raise NotImplementedError

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._head_late)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_late(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is in flight: its head arrived in time
        if self._partial():
            self.transport.write(TIMEOUT_RESPONSE)
        self.transport.close()


class GuardedH11Protocol(_Guards, H11Protocol):
    """`H11Protocol` that drops a connection whose request head is late."""

    def on_response_complete(self) -> None:
        """uvicorn's, but the keep-alive timer is re-armed only when none is armed."""
        self.server_state.total_requests += 1
        if self.transport.is_closing():
            return
        self._idle()
        self.flow.resume_reading()  # unpause data reads if needed
        if self.conn.our_state is h11.DONE and self.conn.their_state is h11.DONE:
            self.conn.start_next_cycle()  # unblock any pipelined events
            self.handle_events()

    def _get_upgrade(self) -> bytes | None:
        if b"upgrade" not in dict(self.headers):  # no Upgrade header: no upgrade, whatever Connection says
            return None
        return super()._get_upgrade()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # the head arrived: the body has its own deadline (limits.Limits)
        elif self._head_timer is None and not self.transport.is_closing() and self._partial():
            self._arm()  # the first bytes of a head: the rest within header_timeout

    def handle_events(self) -> None:
        super().handle_events()
        self._wrap(self.cycle)  # a new request's cycle is made here

    def _partial(self) -> bool:
        return bool(self.conn.trailing_data[0]) or self.conn.their_state is not h11.IDLE


if HttpToolsProtocol is not None:
    class GuardedHttpToolsProtocol(_Guards, HttpToolsProtocol):  # type: ignore[misc]
        """uvicorn's httptools protocol (llhttp, in C: about 9% fewer instructions per gateway
        call than h11, callgrind over `bench/bench_gateway.py`'s calls) with the same guards,
        and h11's bound on a head still arriving (`MAX_HEAD`, else 431), which llhttp lacks.

        A head's bytes are counted from the read it began in (all of that read: an upper bound)
        until the read it ends in."""

        def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
            super().__init__(config, *args, **kwargs)
            self.max_head = int(getattr(config, "h11_max_incomplete_event_size", None) or MAX_HEAD)
            self._head_bytes = -1  # bytes of the head being read; -1 between heads

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes = 0

        def on_headers_complete(self) -> None:
            self._head_bytes = -1
            self._disarm()  # the head arrived: the body has its own deadline (limits.Limits)
            super().on_headers_complete()
            self._wrap(self.cycle)

        def data_received(self, data: bytes) -> None:
            reading = self._head_bytes > 0
            super().data_received(data)
            if self._head_bytes < 0 or self.transport.is_closing():
                return
            self._head_bytes = self._head_bytes + len(data) if reading else len(data)
            if self._head_bytes > self.max_head:
                self._disarm()
                self.transport.write(TOO_LARGE_RESPONSE)
                self.transport.close()
            elif self._head_timer is None:
                self._arm()  # the first bytes of a head: the rest within header_timeout

        def on_response_complete(self) -> None:
            """uvicorn's, but the keep-alive timer is re-armed only when none is armed."""
            self.server_state.total_requests += 1
            if self.transport.is_closing():
                return
            self.flow.resume_reading()  # unpause data reads if needed
            if self.pipeline:  # a pipelined request waits: start it, as uvicorn does
                cycle, app = self.pipeline.pop()
                start = getattr(self, "_start_asgi_task", None)  # uvicorn >= 0.39
                if start is not None:
                    start(cycle, app)
                else:
                    task = self.loop.create_task(cycle.run_asgi(app))
                    task.add_done_callback(self.tasks.discard)
                    self.tasks.add(task)
            else:
                self._idle()

        def _partial(self) -> bool:
            return self._head_bytes >= 0
else:  # named, so that `from unillm.server.protocol import *` works without httptools
    GuardedHttpToolsProtocol = None  # type: ignore[assignment,misc]


__all__ = ["MAX_HEAD", "TIMEOUT_RESPONSE", "TOO_LARGE_RESPONSE", "GatewayConfig", "GuardedH11Protocol",
           "GuardedHttpToolsProtocol", "OneWrite", "default_protocol", "named_protocol"]
