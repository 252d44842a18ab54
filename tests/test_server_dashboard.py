"""The dashboard in headless Chromium: the charts drew (SVG marks with data, coloured pixels) and
the ledger's numbers are on the page. Without Chromium: skipped locally, a failure in CI."""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import zlib
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from tests.test_server_support import served, upstream  # noqa: F401
from unillm.server.svg import usd

openai = pytest.importorskip("openai")
ACCENT = (0x3B, 0x5B, 0xDB)


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is required in CI (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    return exe


def run_chromium(url: str, tmp: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", f"--user-data-dir={tmp / 'profile'}", "--window-size=1280,2000", *extra, url]
    return subprocess.run(args, capture_output=True, text=True, timeout=120, check=True)


def read_png(path: Path) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced PNG."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", chunk)
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    assert header is not None
    width, height, depth, color, _, _, interlace = header
    assert depth == 8 and color in (2, 6) and interlace == 0, header
    bpp = 3 if color == 2 else 4
    raw, stride = zlib.decompress(idat), width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(height):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line[::1]) if bpp == 3 else bytes(v for j, v in enumerate(line) if j % 4 != 3))
        prev = line
    return width, height, rows


def colour_pixels(rows: list[bytes], y0: int, y1: int, rgb: tuple[int, int, int], tol: int = 24) -> int:
    n = 0
    for row in rows[y0:y1]:
        for x in range(0, len(row), 3):
            if all(abs(row[x + k] - rgb[k]) <= tol for k in range(3)):
                n += 1
    return n


def seed(served) -> Decimal:
    """A week of usage for three users and two projects, plus live calls through the SDK."""
    now = datetime.now(timezone.utc)
    items = []
    for day in range(7):
        for user, project, model, n in (("alice", "support-bot", "gpt-4o", 4000), ("bob", "search", "gpt-4o-mini", 20000),
                                        ("chen", "support-bot", "claude-sonnet-4-5", 3000)):
            provider = "anthropic" if model.startswith("claude") else "openai"
            items.append({"provider": provider, "model": model, "input_tokens": n * (day + 1),
                          "output_tokens": n // 4, "user": user, "project": project,
                          "timestamp": (now - timedelta(days=day, hours=1)).isoformat(), "latency_ms": 420 + day})
    r = httpx.post(served.url + "/v1/usage/batch", json={"records": items},
                   headers={"authorization": f"Bearer {served.admin}"})
    assert r.status_code == 201
    client = served.openai(served.key(user="dora", project="search", budget_usd="5"))
    for model in ("gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "command-r"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    a = httpx.get(served.url + "/v1/analytics?since=7d", headers={"authorization": f"Bearer {served.admin}"}).json()
    return Decimal(a["totals"]["cost_usd"])


def test_dashboard_draws_the_ledger_in_chromium(served, tmp_path):
    chromium()
    total = seed(served)
    url = f"{served.url}/dashboard?since=7d&key={served.admin}"
    dom = run_chromium(url, tmp_path, "--dump-dom").stdout
    assert "<svg" in dom and "spend over time" in dom
    values = [Decimal(v) for v in re.findall(r'class="bar"[^>]*data-value="([^"]+)"', dom)]
    assert len([v for v in values if v > 0]) >= 8 + 4  # a week of columns plus breakdown bars
    assert usd(total) in dom  # the exact total from the ledger
    for who in ("alice", "bob", "chen", "dora", "support-bot", "anthropic/claude-sonnet-4-5", "cohere/command-r"):
        assert who in dom
    assert "key:" in dom  # dora's key budget has a gauge
    shot = tmp_path / "dash.png"
    run_chromium(url, tmp_path, f"--screenshot={shot}")
    width, height, rows = read_png(shot)
    assert (width, height) == (1280, 2000)
    chart = colour_pixels(rows, 220, 640, ACCENT)  # the spend-over-time card
    assert chart > 2000, f"only {chart} chart-coloured pixels in the time chart region"
    background = colour_pixels(rows, 1900, 2000, (0xF6, 0xF7, 0xF9), tol=2)
    assert background > 0  # the page background is where it should be: the decoder reads colours


def test_dashboard_cookie_login_and_filters(served):
    seed(served)
    r = httpx.get(f"{served.url}/dashboard?key={served.admin}&since=7d")
    assert r.status_code == 303 and r.headers["location"] == "/dashboard?since=7d"  # the key leaves the URL
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("unillm_session=") and "httponly" in cookie.lower()
    assert served.admin not in cookie  # a random session id, never the key
    session = {"unillm_session": r.cookies["unillm_session"]}
    filtered = httpx.get(f"{served.url}/dashboard?since=7d&where=project%3Dsearch", cookies=session)
    assert filtered.status_code == 200
    assert "bob" in filtered.text and "alice" not in filtered.text and "project=search" in filtered.text
    assert served.admin not in filtered.text  # the key is never echoed into the page
