"""Content parts beyond text and images: files (PDFs), ``input_audio``, ``cache_control``.

The request side speaks OpenAI's part shapes (`types.FilePart`, `types.AudioPart`)
plus Anthropic's ``cache_control`` marker on text, image and file parts, system
parts and tools. Each adapter converts them with the pure functions here:

* Anthropic: a file becomes a ``document`` block (PDF as a base64 source, a
  ``text/*`` file as a text source); ``cache_control`` is kept on every block and
  tool; ``input_audio`` is refused.
* Gemini: files and audio become ``inline_data`` with their MIME type;
  ``cache_control`` is dropped (Gemini caches implicitly and reports cached tokens).
* OpenAI protocol: files and audio travel as OpenAI defines them; ``cache_control``
  is dropped (implicit caching, cached tokens priced from the vendor's usage).
* Cohere: files and audio are refused.

A part a vendor cannot take is refused with `UnsupportedPartError` naming the part and
the vendor; content is never silently dropped, whatever ``drop_params`` says.

Budget estimates stay upper bounds (`media_tokens`), marked ``estimate``:

* a PDF: pages x (the vendor's largest image of a page, `unillm.images`) plus one token
  per byte of its decoded non-image streams and of the bytes outside streams (every
  text token is at least one byte of the content stream that shows it). Pages are
  the ``/Type /Page`` objects, object streams included; a PDF whose pages cannot be
  found counts as `MAX_PDF_PAGES` pages.
* any other file: one token per decoded byte.
* a ``file_id`` (its bytes are not known here): `MAX_PDF_PAGES` pages of
  `FILE_ID_PAGE_TOKENS` each, the vendor's documented limits (a bound by the vendor's
  limits, not by the content).
* audio: `AUDIO_TOKENS_PER_SECOND` per second (Gemini's rate, the highest published),
  the duration read from a WAV header, or for MP3 (and an unreadable WAV) bounded by
  the lowest MPEG bitrate (8 kbit/s), so no shorter file can be billed longer.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
import zlib
from collections.abc import Iterable
from typing import Any

from .errors import InvalidRequestError, UnsupportedPartError
from .types import AudioPart, ContentPart, FilePart, ImagePart, Message, TextPart, Tool

__all__ = ["AUDIO_TOKENS_PER_SECOND", "MAX_PDF_PAGES", "anthropic_block", "data_url",
           "gemini_part", "has_cache_control", "media_tokens", "openai_dump", "refuse_media"]

#: pages assumed for a PDF whose pages cannot be counted (Anthropic's and OpenAI's limit)
MAX_PDF_PAGES = 100
#: text tokens assumed per page of a file known only by id
FILE_ID_PAGE_TOKENS = 4096
#: the highest per-second audio rate a vendor publishes (Gemini: 32 tokens per second)
AUDIO_TOKENS_PER_SECOND = 32
_MIN_BITRATE_BYTES = 1000  # 8 kbit/s: the lowest MPEG audio bitrate, in bytes per second

_AUDIO_MIME = {"wav": "audio/wav", "mp3": "audio/mp3"}


# ── shapes ───────────────────────────────────────────────────────────────────

def data_url(url: str, what: str = "file") -> tuple[str, str]:
    """``(media type, base64 data)`` of a ``data:<type>;base64,<data>`` URL, or a precise error."""
    header, sep, data = url.removeprefix("data:").partition(",")
    media_type, _, encoding = header.partition(";")
    if not url.startswith("data:") or not sep or encoding != "base64" or not media_type:
        raise InvalidRequestError(f"{what} data must be a data URL like "
                                  f"'data:application/pdf;base64,...', not {url[:40]!r}",
                                  param="messages")
    return media_type, data


def _decode(data: str, what: str) -> bytes:
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidRequestError(f"{what} is not valid base64", param="messages") from None


def _media(messages: Iterable[Message]) -> Iterable[FilePart | AudioPart]:
    for m in messages:
        if isinstance(m.content, list):
            for p in m.content:
                if isinstance(p, (FilePart, AudioPart)):
                    yield p


def refuse_media(messages: Iterable[Message], provider: str, allowed: Iterable[str] = (),
                 hint: str = "") -> None:
    """`UnsupportedPartError` for the first file or audio part whose type is not ``allowed``."""
    ok = frozenset(allowed)
    for p in _media(messages):
        if p.type not in ok:
            raise UnsupportedPartError(provider, p.type, hint)


def has_cache_control(messages: Iterable[Message], tools: Iterable[Tool] = ()) -> bool:
    return any(getattr(p, "cache_control", None) is not None
               for m in messages if isinstance(m.content, list) for p in m.content) or any(
        t.cache_control is not None for t in tools)


def openai_dump(m: Message) -> dict[str, Any]:
    """An OpenAI message dict with ``cache_control`` removed (OpenAI caches implicitly)."""
    out = m.model_dump(exclude_none=True)
    if isinstance(out.get("content"), list):
        for part in out["content"]:
            part.pop("cache_control", None)
    return out


def anthropic_block(part: ContentPart, provider: str) -> dict[str, Any]:
    """One content part as an Anthropic content block, ``cache_control`` kept."""
    if isinstance(part, TextPart):
        block: dict[str, Any] = {"type": "text", "text": part.text}
    elif isinstance(part, ImagePart):
        block = _anthropic_image(part.image_url.url)
    elif isinstance(part, FilePart):
        block = _anthropic_document(part, provider)
    else:
        raise UnsupportedPartError(provider, part.type, "the Messages API takes no audio input")
    if part.cache_control is not None:
        block["cache_control"] = part.cache_control.model_dump(exclude_none=True)
    return block


def _anthropic_image(url: str) -> dict[str, Any]:
    if not url.startswith("data:"):
        return {"type": "image", "source": {"type": "url", "url": url}}
    media_type, data = data_url(url, "image")
    return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}


def _anthropic_document(part: FilePart, provider: str) -> dict[str, Any]:
    if part.file.file_data is None:
        raise UnsupportedPartError(provider, "file", "an OpenAI file_id means nothing to Anthropic; "
                                   "send the file as file_data (a data: URL)")
    media_type, data = data_url(part.file.file_data)
    if media_type == "application/pdf":
        source: dict[str, Any] = {"type": "base64", "media_type": media_type, "data": data}
    elif media_type.startswith("text/"):
        text = _decode(data, "file data").decode("utf-8", errors="replace")
        source = {"type": "text", "media_type": "text/plain", "data": text}
    else:
        raise UnsupportedPartError(provider, "file", f"documents are PDF or text/*, not {media_type}")
    block: dict[str, Any] = {"type": "document", "source": source}
    if part.file.filename:
        block["title"] = part.file.filename
    return block


def gemini_part(part: FilePart | AudioPart, provider: str) -> dict[str, Any]:
    """A file or audio part as Gemini ``inline_data`` (raw bytes, as the SDK takes them)."""
    if isinstance(part, AudioPart):
        return {"inline_data": {"mime_type": _AUDIO_MIME[part.input_audio.format],
                                "data": _decode(part.input_audio.data, "input_audio data")}}
    if part.file.file_data is None:
        raise UnsupportedPartError(provider, "file", "an OpenAI file_id means nothing to Gemini; "
                                   "send the file as file_data (a data: URL)")
    media_type, data = data_url(part.file.file_data)
    return {"inline_data": {"mime_type": media_type, "data": _decode(data, "file data")}}


# ── token bounds ─────────────────────────────────────────────────────────────

def media_tokens(messages: Iterable[Message], model: str, protocol: str | None) -> int | None:
    """An upper bound of the prompt tokens of the file and audio parts; None when there are none."""
    parts = list(_media(messages))
    if not parts:
        return None
    from .images import rule_for
    page = rule_for(model, protocol).tokens(None)  # a page image at its largest
    return sum(_part_tokens(p, page) for p in parts)


def _part_tokens(part: FilePart | AudioPart, page: int) -> int:
    if isinstance(part, AudioPart):
        raw = _b64_bytes(part.input_audio.data)
        seconds = _wav_seconds(raw) if part.input_audio.format == "wav" else None
        if seconds is None:
            seconds = len(raw) / _MIN_BITRATE_BYTES
        return math.ceil(seconds * AUDIO_TOKENS_PER_SECOND) + 1
    if part.file.file_data is None:
        return MAX_PDF_PAGES * (page + FILE_ID_PAGE_TOKENS)
    media_type, data = data_url(part.file.file_data)
    raw = _b64_bytes(data)
    if media_type != "application/pdf":
        return len(raw) + 1
    pages, text_bytes = pdf_bound(raw)
    return (pages or MAX_PDF_PAGES) * page + text_bytes


def _b64_bytes(data: str) -> bytes:
    try:
        return base64.b64decode(data)
    except (binascii.Error, ValueError):
        return data.encode()  # refused when converted; as text here, still a bound


def _wav_seconds(raw: bytes) -> float | None:
    """The duration a RIFF/WAVE header states (data size / byte rate), or None."""
    if len(raw) < 44 or raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        return None
    pos, rate = 12, 0
    while pos + 8 <= len(raw):
        cid, size = raw[pos:pos + 4], struct.unpack("<I", raw[pos + 4:pos + 8])[0]
        if cid == b"fmt " and size >= 16:
            rate = struct.unpack("<I", raw[pos + 16:pos + 20])[0]
        elif cid == b"data":
            return max(size, len(raw) - pos - 8) / rate if rate else None
        pos += 8 + size + (size & 1)
    return None


_STREAM = re.compile(rb"stream\r?\n")
_PAGE = re.compile(rb"/Type\s*/Page(?![a-zA-Z])")


def pdf_bound(raw: bytes) -> tuple[int, int]:
    """``(pages, text bytes)`` of a PDF: ``/Type /Page`` objects (in object streams too), and
    the bytes of its decoded non-image streams plus those outside any stream."""
    pages = len(_PAGE.findall(raw))
    text_bytes, pos = 0, 0
    for match in _STREAM.finditer(raw):
        if match.start() < pos:
            continue
        end = raw.find(b"endstream", match.end())
        end = len(raw) if end < 0 else end
        text_bytes += match.start() - pos
        head = raw[max(pos, match.start() - 512):match.start()]
        body = raw[match.end():end]
        if b"/Image" not in head.rsplit(b"obj", 1)[-1]:
            decoded = _inflate(body) if b"/FlateDecode" in head else body
            text_bytes += len(decoded)
            if b"/ObjStm" in head:
                pages += len(_PAGE.findall(decoded))
        pos = end
    return pages, text_bytes + len(raw) - pos


def _inflate(body: bytes) -> bytes:
    try:
        return zlib.decompressobj().decompress(body, 64 << 20)  # at most 64 MiB counted per stream
    except zlib.error:
        return body
