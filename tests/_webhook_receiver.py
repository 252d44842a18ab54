"""A webhook receiver in its own process, verifying signatures as the README shows.

    python _webhook_receiver.py PORT SECRET LOG [HANG_ON]

Each POST is appended to LOG as one JSON line ({"id", "header_id", "signed", "fresh",
"body"}) before it is answered 200. With HANG_ON = N the N-th POST is logged and then
never answered (the test kills this process mid-delivery). Prints "ready" once listening.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, secret, log_path = int(sys.argv[1]), sys.argv[2].encode(), sys.argv[3]
hang_on = int(sys.argv[4]) if len(sys.argv) > 4 else 0
seen = 0
lock = threading.Lock()


def verified(header: str, body: bytes) -> tuple[bool, bool]:
    """(signature valid, timestamp within 5 minutes): the README's snippet."""
    parts = dict(p.split("=", 1) for p in header.split(","))
    expected = hmac.new(secret, parts["t"].encode() + b"." + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, parts["v1"]), abs(time.time() - int(parts["t"])) <= 300


class Receiver(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_POST(self) -> None:
        global seen
        body = self.rfile.read(int(self.headers["content-length"]))
        signed, fresh = verified(self.headers.get("unillm-signature", "t=0,v1="), body)
        with lock:
            seen += 1
            n = seen
            with open(log_path, "a") as f:
                f.write(json.dumps({"id": json.loads(body)["id"], "header_id": self.headers["unillm-webhook-id"],
                                    "signed": signed, "fresh": fresh, "body": json.loads(body)}) + "\n")
        if n == hang_on:
            time.sleep(3600)  # mid-delivery: killed before it answers
        self.send_response(200 if signed else 400)
        self.send_header("content-length", "0")
        self.end_headers()


server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
print("ready", flush=True)
server.serve_forever()
