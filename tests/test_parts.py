"""File (PDF), input_audio and cache_control parts: converted per vendor by the real SDKs
against FakeProvider, refused with UnsupportedPartError where a vendor cannot take them,
and bounded from above in budget estimates."""

from __future__ import annotations

import base64
import struct
import zlib

import pytest

from unillm import Client, errors
from unillm.images import rule_for
from unillm.parts import AUDIO_TOKENS_PER_SECOND, media_tokens, pdf_bound
from unillm.testing import FakeProvider
from unillm.tokens import count_prompt
from unillm.types import build_request


def _pdf(pages: int, text: str = "Hello PDF", compressed: bool = True) -> bytes:
    """A small but well-formed PDF with ``pages`` pages showing ``text``."""
    content = f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()
    stream = zlib.compress(content) if compressed else content
    filt = b"/Filter /FlateDecode " if compressed else b""
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [" + b" ".join(b"%d 0 R" % (4 + i) for i in range(pages))
            + b"] /Count %d >>" % pages,
            b"<< " + filt + b"/Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream"]
    objs += [b"<< /Type /Page /Parent 2 0 R /Contents 3 0 R >>" for _ in range(pages)]
    out = b"%PDF-1.4\n"
    for i, body in enumerate(objs, 1):
        out += b"%d 0 obj\n" % i + body + b"\nendobj\n"
    return out + b"%%EOF\n"


def _wav(seconds: float, rate: int = 16000) -> bytes:
    data = b"\0\0" * int(rate * seconds)
    fmt = struct.pack("<HHIIHH", 1, 1, rate, rate * 2, 2, 16)
    return (b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt
            + b"data" + struct.pack("<I", len(data)) + data)


def _file_msg(raw: bytes, mime: str = "application/pdf") -> list[dict]:
    url = f"data:{mime};base64,{base64.b64encode(raw).decode()}"
    return [{"role": "user", "content": [{"type": "text", "text": "Summarise."},
                                         {"type": "file", "file": {"file_data": url, "filename": "a.pdf"}}]}]


def _audio_msg(raw: bytes, fmt: str = "wav") -> list[dict]:
    return [{"role": "user", "content": [{"type": "input_audio", "input_audio": {
        "data": base64.b64encode(raw).decode(), "format": fmt}}]}]


def _mime(part: dict) -> str:
    inline = part["inlineData"]  # google-genai sends the nested key as written (the API takes both)
    return inline.get("mimeType") or inline["mime_type"]


@pytest.fixture
def client(fake: FakeProvider) -> Client:
    return Client(providers=fake.providers(), ledger="off")


def test_pdf_goes_to_anthropic_as_document_gemini_inline_openai_as_is(client, fake):
    raw = _pdf(2)
    client.chat("claude-sonnet-4-5", _file_msg(raw))
    block = fake.requests[-1].json["messages"][0]["content"][1]
    assert block == {"type": "document", "title": "a.pdf", "source": {
        "type": "base64", "media_type": "application/pdf", "data": base64.b64encode(raw).decode()}}
    client.chat("gemini-2.5-flash", _file_msg(raw))
    part = fake.requests[-1].json["contents"][0]["parts"][1]
    assert _mime(part) == "application/pdf"
    assert base64.urlsafe_b64decode(part["inlineData"]["data"]) == raw  # the SDK sends bytes url-safe
    client.chat("gpt-4o-mini", _file_msg(raw))
    assert fake.requests[-1].json["messages"][0]["content"][1]["type"] == "file"


def test_text_file_is_an_anthropic_text_document(client, fake):
    client.chat("claude-sonnet-4-5", _file_msg(b"plain notes", "text/plain"))
    block = fake.requests[-1].json["messages"][0]["content"][1]
    assert block["source"] == {"type": "text", "media_type": "text/plain", "data": "plain notes"}


def test_parts_a_vendor_cannot_take_are_refused_before_sending(client, fake):
    with pytest.raises(errors.UnsupportedPartError) as info:
        client.chat("command-r", _file_msg(_pdf(1)))
    assert "cohere" in str(info.value) and "'file'" in str(info.value)
    with pytest.raises(errors.UnsupportedPartError) as info:
        client.chat("claude-sonnet-4-5", _audio_msg(_wav(1)))
    assert "anthropic" in str(info.value) and "'input_audio'" in str(info.value)
    with pytest.raises(errors.UnsupportedParamError):  # refused even when drop_params would drop
        client.chat("command-r", _audio_msg(_wav(1)), drop_params=True)
    assert fake.requests == []


def test_audio_to_gemini_inline_and_openai_as_is(client, fake):
    raw = _wav(0.5)
    client.chat("gemini-2.5-flash", _audio_msg(raw))
    part = fake.requests[-1].json["contents"][0]["parts"][0]
    assert _mime(part) == "audio/wav"
    client.chat("gpt-4o-mini", _audio_msg(raw))
    assert fake.requests[-1].json["messages"][0]["content"][0]["input_audio"]["format"] == "wav"


def test_cache_control_kept_for_anthropic_dropped_for_implicit_cachers(client, fake):
    msgs = [{"role": "system", "content": [{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}]},
            {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]
    r = client.chat("claude-sonnet-4-5", msgs)
    body = fake.requests[-1].json
    assert body["system"] == [{"type": "text", "text": "rules", "cache_control": {"type": "ephemeral"}}]
    assert body["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert r.usage.cache_write_tokens > 0 and r.usage.cache_write_1h_tokens == r.usage.cache_write_tokens
    for model in ("gpt-4o-mini", "gemini-2.5-flash", "command-r"):
        client.chat(model, msgs)
        assert "cache_control" not in str(fake.requests[-1].json), model


def test_plain_system_prompt_stays_a_string_for_anthropic(client, fake):
    client.chat("claude-sonnet-4-5", [{"role": "system", "content": "rules"}, {"role": "user", "content": "hi"}])
    assert fake.requests[-1].json["system"] == "rules"


def test_bad_cache_control_is_one_precise_error(client):
    with pytest.raises(errors.InvalidRequestError) as info:
        client.chat("claude-sonnet-4-5", [{"role": "user", "content": [
            {"type": "text", "text": "hi", "cache_control": {"type": "forever"}}]}])
    assert "cache_control" in str(info.value)


# ── bounds ──

def test_pdf_pages_are_counted_through_compression():
    for compressed in (True, False):
        pages, text = pdf_bound(_pdf(3, "x" * 500, compressed))
        assert pages == 3 and text >= 500


@pytest.mark.parametrize(("model", "protocol"), [("claude-sonnet-4-5", "anthropic"),
                                                  ("gemini-2.5-flash", "google"), ("gpt-4o", "openai")])
def test_pdf_estimate_bounds_pages_and_text(model, protocol):
    text = "word " * 400
    req = build_request(model, _file_msg(_pdf(3, text)), {})
    n = media_tokens(req.messages, model, protocol)
    assert n is not None and n >= 3 * rule_for(model, protocol).tokens(None) + len(text)
    with_pdf, source = count_prompt(req, model)
    assert source == "estimate" and with_pdf >= n


def test_audio_estimate_bounds_duration():
    req = build_request("gemini-2.5-flash", _audio_msg(_wav(10)), {})
    n = media_tokens(req.messages, "gemini-2.5-flash", "google")
    assert n is not None and n >= 10 * AUDIO_TOKENS_PER_SECOND
    mp3 = build_request("gpt-4o-audio-preview", _audio_msg(b"\xff" * 4000, "mp3"), {})
    assert media_tokens(mp3.messages, "gpt-4o", "openai") >= 4 * AUDIO_TOKENS_PER_SECOND  # 4 s at 8 kbit/s
