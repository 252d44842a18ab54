"""`FakeApi`: a loopback HTTP API that answers JSON, for metering anything but an LLM.

::

    with FakeApi() as api:                     # http://127.0.0.1:PORT
        api.reply = {"duration": 90}           # what every request is answered with
        httpx.post(api.url + "/stt", content=b"...")
        api.received[-1]["path"]               # what it was sent
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from typing_extensions import Self


class FakeApi:
    def __init__(self, reply: Any = None) -> None:
        self.received: list[dict[str, Any]] = []
        self.reply: Any = {"ok": True} if reply is None else reply
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                size = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(size) if size else b""
                api.received.append({"method": self.command, "path": self.path, "body": body,
                                     "headers": dict(self.headers)})
                data = json.dumps(api.reply).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815 - http.server names them

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.host = f"127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
