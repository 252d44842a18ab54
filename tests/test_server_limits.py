"""What a client may send `unillm serve` (issue 13, finding 5): body size, slow clients, JSON depth,
bad encodings. Raw sockets where an HTTP client would not misbehave on purpose; the gateway is served
by `unillm.server.run.uvicorn_config`, the configuration ``unillm serve`` runs."""

from __future__ import annotations

import json
import select
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.test_server_support import Served, run_in_thread, upstream  # noqa: F401
from unillm import Client
from unillm.server.app import create_app
from unillm.server.limits import parse_json
from unillm.server.run import uvicorn_config
from unillm.server.wire import HTTPError

openai = pytest.importorskip("openai")

MSG = [{"role": "user", "content": "What is 2+2?"}]
MiB = 1024 * 1024


def serve(fake: Any, tmp_path: Path, http: str = "auto", **server: Any) -> Iterator[Served]:
    providers = {n: {**t, "max_retries": 0} for n, t in fake.providers("openai").items()}
    client = Client(providers=providers, ledger=f"sqlite:///{tmp_path}/l.db", server=server)
    app = create_app(client)
    admin, _ = app.state.gateway.keys.create(user="root", project="ops", admin=True)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    try:
        for url in run_in_thread(uvicorn_config(app, log_level="warning", http=http), sock):
            yield Served(url, app, client, admin)
    finally:
        client.close()


@pytest.fixture(params=["httptools", "h11"])
def gw(upstream, tmp_path, request) -> Iterator[Served]:
    """The gateway, served by each HTTP protocol it can run (httptools when installed, the
    default; h11 without it): the limits hold on both."""
    yield from serve(upstream, tmp_path, http=request.param, header_timeout=1.0, body_timeout=1.0)


def connect(s: Served) -> socket.socket:
    host, port = s.url.removeprefix("http://").split(":")
    return socket.create_connection((host, int(port)), timeout=10)


def head(s: Served, extra: str) -> bytes:
    return (f"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {s.admin}\r\n"
            f"content-type: application/json\r\n{extra}\r\n").encode()


def read_all(conn: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes the connection."""
    conn.settimeout(timeout)
    out = b""
    while True:
        try:
            data = conn.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            return out
        if not data:
            return out
        out += data


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


# ── body size ─────────────────────────────────────────────────────────────────

def test_declared_100mb_body_is_refused_before_it_is_sent(gw, upstream):
    conn = connect(gw)
    conn.sendall(head(gw, f"content-length: {100 * MiB}\r\n"))  # and not one byte of the body
    response = read_all(conn)
    assert status_of(response) == 413 and b"connection: close" in response.lower()
    err = json.loads(response.split(b"\r\n\r\n", 1)[1])["error"]
    assert err["code"] == "request_too_large" and "max_body_bytes" in err["message"]
    assert upstream.requests == []


def test_chunked_100mb_body_is_cut_off_near_the_limit_not_read_whole(gw, upstream):
    """No Content-Length: the gateway counts as it reads and stops at 10 MiB (the default)."""
    conn = connect(gw)
    conn.sendall(head(gw, "transfer-encoding: chunked\r\n"))
    piece = b"x" * (256 * 1024)
    frame = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sent, answered = 0, b""
    conn.setblocking(False)
    while sent < 100 * MiB:
        readable, writable, _ = select.select([conn], [conn], [], 10)
        if readable:
            try:
                answered = conn.recv(65536)
            except OSError:
                pass
            break
        assert writable, "the gateway neither read nor answered for 10 s"
        try:
            sent += conn.send(frame)
        except (BlockingIOError, InterruptedError):
            continue
        except OSError:  # the gateway closed the connection
            break
    conn.setblocking(True)
    answered += read_all(conn)
    assert status_of(answered) == 413
    # 10 MiB were read; the rest of 100 MB was never taken in (socket buffers hold a few MiB at most)
    assert 10 * MiB < sent < 40 * MiB, sent
    assert upstream.requests == []


def test_sdk_gets_413_over_a_small_limit_and_ordinary_calls_pass(upstream, tmp_path):
    for s in serve(upstream, tmp_path, max_body_bytes=4096):
        assert s.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG).choices
        with pytest.raises(openai.APIStatusError) as info:
            s.openai().chat.completions.create(model="gpt-4o-mini",
                                               messages=[{"role": "user", "content": "y" * 5000}])
        assert info.value.status_code == 413 and info.value.code == "request_too_large"
        assert len(upstream.requests) == 1


def test_a_whole_chunked_body_over_the_limit_is_refused_though_it_came_with_the_head(upstream, tmp_path):
    """A body that arrived complete skips the read guard only when within max_body_bytes."""
    for s in serve(upstream, tmp_path, max_body_bytes=4096):
        body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "y" * 5000}]})
        conn = connect(s)
        conn.sendall(head(s, "transfer-encoding: chunked\r\n") + f"{len(body):x}\r\n{body}\r\n0\r\n\r\n".encode())
        response = read_all(conn)
        assert status_of(response) == 413 and b"connection: close" in response.lower()
        assert upstream.requests == []


# ── slow clients ───────────────────────────────────────────────────────────────

def test_slow_headers_get_408_and_the_connection_is_dropped(gw):
    conn = connect(gw)
    started = time.monotonic()
    conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\n")  # the head never ends
    for _ in range(3):
        time.sleep(0.2)
        try:
            conn.sendall(b"x-slow: 1\r\n")  # trickling bytes does not reset the clock
        except OSError:
            break
    response = read_all(conn)
    assert status_of(response) == 408 and b"header_timeout" in response
    assert time.monotonic() - started < 8


def test_a_head_growing_past_16_kib_is_refused_at_once_and_the_connection_dropped(gw, upstream):
    """h11 bounds a request head still arriving (16 KiB); llhttp, under httptools, does not: the
    gateway's protocol does, or a client could grow one header for header_timeout seconds at
    line rate. Refused when it passes the bound (400/431), not at the head's deadline (408)."""
    conn = connect(gw)
    conn.sendall(head(gw, "").removesuffix(b"\r\n") + b"x-big: ")
    for _ in range(6):  # 48 KiB of one header, the head never ending
        try:
            conn.sendall(b"a" * 8 * 1024)
        except OSError:
            break  # closed while sending: refused early
        time.sleep(0.05)
    response = read_all(conn)
    assert status_of(response) in (400, 431), response[:200]
    assert upstream.requests == []
    conn = connect(gw)  # a head of 12 KiB, arriving in pieces, is served
    conn.sendall(head(gw, "").removesuffix(b"\r\n") + b"x-big: " + b"a" * 6 * 1024)
    time.sleep(0.05)
    conn.sendall(b"a" * 6 * 1024 + b"\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}")
    assert status_of(read_all(conn)) == 400  # the app's answer (no model), not the protocol's


def test_pipelined_requests_are_each_answered_in_order(gw):
    conn = connect(gw)
    get = f"GET /v1/models HTTP/1.1\r\nhost: gw\r\nauthorization: Bearer {gw.admin}\r\n\r\n".encode()
    conn.sendall(get + get + get.replace(b"\r\n\r\n", b"\r\nconnection: close\r\n\r\n"))
    response = read_all(conn)
    assert response.count(b"HTTP/1.1 200 OK") == 3


def test_idle_connection_is_closed_and_keepalive_requests_still_work(gw):
    with httpx.Client(base_url=gw.url, headers={"authorization": f"Bearer {gw.admin}"}) as http:
        for _ in range(3):  # one kept-alive connection, each request inside its own head window
            assert http.get("/v1/models").status_code == 200
            time.sleep(0.5)
    conn = connect(gw)
    assert read_all(conn) == b""  # nothing sent at all: closed without a response


def test_slow_body_gets_408(gw, upstream):
    conn = connect(gw)
    conn.sendall(head(gw, "content-length: 200\r\n") + b'{"model": "gpt-4o-mini", ')
    response = read_all(conn)
    assert status_of(response) == 408 and b"body_timeout" in response
    assert upstream.requests == []


# ── JSON shape and encoding ──────────────────────────────────────────────────

def _raw(s: Served, body: bytes) -> httpx.Response:
    return httpx.post(s.url + "/v1/chat/completions", content=body, timeout=30,
                      headers={"authorization": f"Bearer {s.admin}", "content-type": "application/json"})


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_deep_json_is_400(gw, upstream, depth):
    nested = "[" * depth + "]" * depth
    body = f'{{"model": "gpt-4o-mini", "messages": [{{"role": "user", "content": {nested}}}]}}'
    r = _raw(gw, body.encode())
    assert r.status_code == 400 and r.json()["error"]["code"] == "json_too_deep"
    assert "max_json_depth" in r.json()["error"]["message"]
    assert upstream.requests == []


def test_json_within_the_depth_passes_with_many_brackets(gw, upstream):
    tools = [{"type": "function", "function": {"name": f"f{i}", "parameters": {
        "type": "object", "properties": {"a": {"type": "array", "items": {"type": "string"}}}}}}
        for i in range(40)]
    resp = gw.openai().chat.completions.create(model="gpt-4o-mini", messages=MSG, tools=tools)
    assert resp.choices and len(upstream.requests[-1].json["tools"]) == 40


def test_lone_surrogate_is_400_and_a_real_pair_passes(gw, upstream):
    # the OpenAI SDK cannot encode a lone surrogate; any JSON encoder escapes one as \\ud800
    r = _raw(gw, json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "bad \ud800"}]}).encode())
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_encoding"
    assert "surrogate" in r.json()["error"]["message"]
    r = _raw(gw, b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "ok"}], '
                 b'"metadata": {"\\udfff": "x"}}')
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_encoding"
    assert upstream.requests == []
    ok = _raw(gw, b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\ud83d\\ude80 \\\\ud800"}]}')
    assert ok.status_code == 200
    assert upstream.requests[-1].json["messages"][0]["content"] == "\U0001F680 \\ud800"


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"\xed\xa0\x80", b"caf\xc3"])
def test_bad_utf8_is_400(gw, upstream, raw):
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "' + raw + b'"}]}'
    r = _raw(gw, body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_encoding"
    assert upstream.requests == []


def test_parse_json_units():
    assert parse_json(b"", 64) is None
    assert parse_json(b'{"a": [[["\\ud83d\\ude80"]]]}', 4) == {"a": [[["\U0001F680"]]]}
    with pytest.raises(HTTPError) as info:
        parse_json(b'{"a": [[[1]]]}', 3)
    assert info.value.status == 400 and info.value.code == "json_too_deep"
    with pytest.raises(HTTPError) as info:
        parse_json(b'{"a": 1', 64)
    assert info.value.code == "invalid_json"

