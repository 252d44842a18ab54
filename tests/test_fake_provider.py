"""FakeProvider itself: what a newcomer sees when a client hangs up on it."""

from __future__ import annotations

import socket
import struct
import time
from urllib.parse import urlsplit

import openai

from unillm.testing import FakeProvider, Reply


def _reset_connection(url: str, partial: bytes) -> None:
    """Connect, send ``partial``, and close with a TCP reset (SO_LINGER 0), as a dropped pool does."""
    parts = urlsplit(url)
    sock = socket.create_connection((parts.hostname, parts.port))
    if partial:
        sock.sendall(partial)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def test_a_client_resetting_its_connection_prints_nothing(capfd) -> None:
    with FakeProvider(Reply(text="hi")) as fake:
        for partial in (b"", b"POST /v1/chat/completions HTTP/1.1\r\n"):
            _reset_connection(fake.url, partial)
        time.sleep(0.3)  # the server threads notice the resets
        sdk = openai.OpenAI(api_key="k", base_url=fake.base_url("openai"), max_retries=0)
        reply = sdk.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].message.content == "hi"  # and it still serves
    err = capfd.readouterr().err
    assert "Traceback" not in err and "ConnectionResetError" not in err, err
