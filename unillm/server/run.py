"""Serving the gateway on uvicorn, set up for latency (what ``unillm serve`` runs).

Measured with ``bench/bench_gateway.py``; each choice below is one of those figures:

* **TCP_NODELAY on every connection.** uvicorn writes a response as two segments
  (head, then body). With Nagle's algorithm on, the body waits for the client's
  delayed ACK: ~40 ms per request instead of ~0.5 ms. asyncio disables Nagle only
  on sockets created with ``proto=IPPROTO_TCP``, and uvicorn's own bind (its
  ``--workers`` path) creates them with proto 0, so `listen` binds the socket here.
* **No access log.** One formatted log record per request on the event loop;
  ``access_log=True`` turns it back on.
* **httptools** (llhttp, in C) parses HTTP, not h11: the gateway runs about 9% fewer
  instructions per call (callgrind, 300 calls: 6.15M with h11, 5.61M with httptools), so
  ``unillm[server]`` pulls it; without it the gateway serves with h11 and the same guards.
  **uvloop** gained nothing measurable (6.15M either way) and is not pulled.
* **workers** > 1: one process per core sharing the listening socket, each
  building its own `Client` (SDK connection pool, ledger connection) through
  `AppFactory`. Rate limits and per-key concurrency are shared by the workers through
  the ledger's database or Redis (see `unillm.server.ratelimit`).
* **lifespan on**: the app opens its `Client` at startup and closes it at shutdown
  (`unillm.server.app.lifespan`), in each worker.
* **Keep-alive longer than any client pool's** (``[server] keep_alive_seconds``, 120 s;
  uvicorn's own default is 5 s): a client reusing an idle connection just as the server
  closes it gets a reset (``httpx.ReadError``) for a request it never saw answered.
* **The start-up heap frozen** (`unillm.server.heap`): `serve` wraps the app in `FreezeHeap`,
  so a full garbage collection no longer walks the SDKs' and the app's objects while every
  request in flight waits (100-670 ms each at 50 clients, ~2 ms after).
* **A header read timeout** (``[server] header_timeout``) and a bound on the head (16 KiB):
  connections are served by `unillm.server.protocol.GuardedHttpToolsProtocol` (or
  `GuardedH11Protocol`), uvicorn's protocol plus a timer that drops a client whose request
  head is late (uvicorn has none).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import socket
from dataclasses import dataclass, field
from typing import Any

__all__ = ["AppFactory", "RedactKeys", "listen", "serve", "uvicorn_config"]

_SECRET_QUERY = re.compile(r"([?&]key=)[^&\s\"]+")


class RedactKeys(logging.Filter):
    """Keeps ``?key=...`` (the dashboard's login) out of uvicorn's logs."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(_SECRET_QUERY.sub(r"\1***", a) if isinstance(a, str) else a
                                for a in record.args)
        return True


def redact_logs() -> None:
    """Install `RedactKeys` on uvicorn's loggers (in every process that serves)."""
    for name in ("uvicorn.access", "uvicorn.error"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactKeys) for f in logger.filters):
            logger.addFilter(RedactKeys())


@dataclass(frozen=True)
class AppFactory:
    """Builds the gateway app from a config file in each worker process.

    Picklable on purpose: uvicorn spawns its workers and sends them the factory.
    ``overrides`` are `Client` keyword arguments (e.g. ``{"ledger": url}``).
    """

    config: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    #: wrap the app in `unillm.server.heap.FreezeHeap` (what `serve` asks for)
    freeze_heap: bool = False

    def client(self) -> Any:
        from ..client import Client
        if self.config:
            return Client.from_config(self.config, **self.overrides)
        return Client(**self.overrides)

    def __call__(self) -> Any:
        from .app import create_app
        redact_logs()  # each worker process has its own loggers
        app = create_app(self.client())
        if self.freeze_heap:
            from .heap import FreezeHeap
            return FreezeHeap(app)
        return app

    def server_settings(self) -> Any:
        """The ``[server]`` table (limits the supervisor process needs too)."""
        from ..config import load_settings
        return load_settings(self.config, **self.overrides).server


def listen(host: str = "127.0.0.1", port: int = 8080) -> socket.socket:
    """A bound TCP socket whose accepted connections get TCP_NODELAY under asyncio too."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                      proto=socket.IPPROTO_TCP)[0]
    sock = socket.socket(family, kind, proto or socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)  # shared with worker processes
    return sock


def uvicorn_config(app: Any, *, workers: int = 1, log_level: str = "info",
                   access_log: bool = False, header_timeout: float | None = None,
                   freeze_heap: bool = False, **options: Any) -> Any:
    """uvicorn's Config for the gateway: ``app`` is an ASGI app or an `AppFactory`.

    ``header_timeout`` and ``timeout_keep_alive`` default to the app's ``[server]
    header_timeout`` and ``keep_alive_seconds``; ``options``
    go to uvicorn unchanged (e.g. ``loop="asyncio"``), but ``http``: ``"auto"`` (the default:
    httptools when installed, else h11), ``"h11"`` or ``"httptools"`` serve with the gateway's
    guards (`unillm.server.protocol`); a protocol class of your own serves without them. ``freeze_heap``
    wraps the app in `unillm.server.heap.FreezeHeap` (process-wide: `serve` asks for it).
    """
    from .protocol import GatewayConfig, named_protocol
    server = _server_settings(app)
    if header_timeout is None:
        header_timeout = server.header_timeout
    options.setdefault("timeout_keep_alive", server.keep_alive_seconds)
    if options.get("http") in ("auto", "h11", "httptools"):
        options["http"] = named_protocol(options["http"])
    settings: dict[str, Any] = {"log_level": log_level, "access_log": access_log,
                                "lifespan": "on", "workers": workers, **options}
    if isinstance(app, AppFactory):
        settings["factory"] = True
        if freeze_heap:
            app = dataclasses.replace(app, freeze_heap=True)
    elif freeze_heap:
        from .heap import FreezeHeap
        app = FreezeHeap(app)
    return GatewayConfig(app, header_timeout=header_timeout, **settings)


def _server_settings(app: Any) -> Any:
    if isinstance(app, AppFactory):
        return app.server_settings()
    gateway = getattr(getattr(app, "state", None), "gateway", None)
    if gateway is not None:
        return gateway.server
    from ..config import ServerSettings
    return ServerSettings()


def serve(app: Any, *, host: str = "127.0.0.1", port: int = 8080, workers: int = 1,
          log_level: str = "info", access_log: bool = False, sock: socket.socket | None = None,
          **options: Any) -> None:
    """Run the gateway until interrupted. ``workers`` > 1 needs an `AppFactory`."""
    import uvicorn
    if workers > 1 and not isinstance(app, AppFactory):
        raise ValueError("workers > 1 needs an AppFactory: each worker process builds its own app")
    redact_logs()
    sock = sock or listen(host, port)
    options.setdefault("freeze_heap", True)  # this process is the gateway's own
    config = uvicorn_config(app, workers=workers, log_level=log_level, access_log=access_log, **options)
    if workers > 1:
        from uvicorn.supervisors import Multiprocess

        from .metrics import shared_between_workers
        class Supervisor(Multiprocess):
            def handle_hup(self) -> None:  # each worker re-reads unillm.toml in place (admin.on_sighup)
                import signal
                for p in self.processes:
                    if p.pid is not None:
                        os.kill(p.pid, signal.SIGHUP)

        with shared_between_workers(_server_settings(app)):  # one scrape sums every worker
            Supervisor(config, sockets=[sock]).run()
    else:
        uvicorn.Server(config).run(sockets=[sock])
