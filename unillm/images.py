"""What an image in a prompt costs in tokens, by each vendor's published rule.

Budgets hold a call's worst case before it is sent, so an image must never count
for less than the vendor will bill. The size comes from the image itself when it
travels as a ``data:`` URL (PNG, JPEG, GIF and WebP headers are read; nothing is
decoded); for an ``http(s)`` URL, which unillm never fetches, the rule's maximum
for any size is used. Either way the count is marked ``estimate``.

The rules (pixel sizes after the vendor's own resizing):

* **OpenAI tiles** (gpt-4o, gpt-4.1, gpt-5, o1/o3 …): ``detail="low"`` is the
  base; otherwise the image is fitted into 2048x2048, its short side scaled down
  to 768, and it costs base + tile x (512px tiles). At most 8 tiles.
* **OpenAI patches** (gpt-4.1-mini/nano, gpt-5-mini/nano, o4-mini): 32px patches,
  at most 1,536 (larger images are scaled down to fit), times the model's
  multiplier; ``detail`` has no effect.
* **Anthropic**: scaled down to the model's longest edge and area; then
  ``width*height/750`` (the classic formula) or one token per 28x28 patch of the
  padded image (the current one), whichever is larger.
* **Gemini 2.x**: an image within 384x384 is 258 tokens; a larger one is cut
  into tiles (each 258) whose side is ``min(w, h) / 1.5`` clamped to 256..768;
  at most 3072x3072 after scaling. **Gemini 3** bills a fixed count per image
  by media resolution (1,120 at the default, high).

Sources: OpenAI "Images and vision" guide (platform.openai.com/docs/guides/images-vision,
"Calculating costs"); Anthropic "Images and vision" (platform.claude.com/docs/en/build-with-claude/vision);
Google "Understand and count tokens" (ai.google.dev/gemini-api/docs/tokens) and
"Media resolution" (ai.google.dev/gemini-api/docs/media-resolution).
Where a vendor's documentation and its observed bills differ (OpenAI's patch
multipliers for gpt-5-mini/nano are documented higher than some bills show), the
larger figure is kept: the count is a bound, and the vendor's usage replaces it.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["image_size", "image_tokens", "rule_for", "ImageRule"]

Size = tuple[int, int]


# ── sizes from data URLs ─────────────────────────────────────────────────────

_DATA_URL = re.compile(r"^data:[^,;]*(?:;[^,;]*)*;base64,", re.IGNORECASE)


def image_size(url: str) -> Size | None:
    """``(width, height)`` of a base64 ``data:`` URL image (PNG, JPEG, GIF, WebP), else None."""
    m = _DATA_URL.match(url)
    if m is None:
        return None
    payload = url[m.end():]
    try:
        head = _b64(payload[:64])  # enough for PNG, GIF and WebP headers
        if head[:8] == b"\x89PNG\r\n\x1a\n":
            return _positive(struct.unpack(">II", head[16:24]))
        if head[:6] in (b"GIF87a", b"GIF89a"):
            return _positive(struct.unpack("<HH", head[6:10]))
        if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
            return _webp(head)
        if head[:2] == b"\xff\xd8":
            return _jpeg(_b64(payload))
    except (binascii.Error, ValueError, struct.error, IndexError):
        return None
    return None


def _b64(text: str) -> bytes:
    text = "".join(text.split())
    return base64.b64decode(text[: len(text) - len(text) % 4])


def _positive(size: tuple[int, ...]) -> Size | None:
    w, h = size[0], size[1]
    return (w, h) if w > 0 and h > 0 else None


def _webp(head: bytes) -> Size | None:
    kind = head[12:16]
    if kind == b"VP8 ":
        w, h = struct.unpack("<HH", head[26:30])
        return _positive((w & 0x3FFF, h & 0x3FFF))
    if kind == b"VP8L":
        b = head[21:25]
        w = 1 + (((b[1] & 0x3F) << 8) | b[0])
        h = 1 + (((b[3] & 0x0F) << 10) | (b[2] << 2) | ((b[1] & 0xC0) >> 6))
        return _positive((w, h))
    if kind == b"VP8X":
        w = 1 + int.from_bytes(head[24:27], "little")
        h = 1 + int.from_bytes(head[27:30], "little")
        return _positive((w, h))
    return None


_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _jpeg(data: bytes) -> Size | None:
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = struct.unpack(">H", data[i + 2:i + 4])[0]
        if marker in _SOF:
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            return _positive((w, h))
        i += 2 + length
    return None


# ── the rules ────────────────────────────────────────────────────────────────

def _fit(w: float, h: float, long_edge: float | None = None, area: float | None = None,
         short_edge: float | None = None) -> tuple[float, float]:
    """Scale ``(w, h)`` down (never up) to a longest edge, an area and a shortest edge."""
    scale = 1.0
    if long_edge is not None:
        scale = min(scale, long_edge / max(w, h))
    if area is not None:
        scale = min(scale, math.sqrt(area / (w * h)))
    if short_edge is not None:
        scale = min(scale, short_edge / min(w, h))
    return w * scale, h * scale


@dataclass(frozen=True)
class ImageRule:
    """``tokens(size or None, detail)``: a vendor's count for one image (None: any size)."""

    name: str
    count: Callable[[Size, str | None], int]
    worst: Callable[[str | None], int]

    def tokens(self, size: Size | None, detail: str | None = None) -> int:
        return self.worst(detail) if size is None else self.count(size, detail)


def openai_tiles(base: int, tile: int) -> ImageRule:
    def count(size: Size, detail: str | None) -> int:
        if detail == "low":
            return base
        w, h = _fit(*_fit(*size, long_edge=2048), short_edge=768)
        return base + tile * math.ceil(w / 512) * math.ceil(h / 512)
    # fitted into 2048 and short side at most 768: at most 2 x 4 tiles
    return ImageRule(f"openai-tiles:{base}/{tile}", count, lambda d: base if d == "low" else base + 8 * tile)


def openai_patches(multiplier: float, cap: int = 1536) -> ImageRule:
    def count(size: Size, detail: str | None) -> int:
        w, h = size
        patches = math.ceil(w / 32) * math.ceil(h / 32)
        if patches > cap:  # scaled to fit ``cap`` patches, then down to whole patches on one side
            r = math.sqrt(32 * 32 * cap / (w * h))
            r *= min(math.floor(w * r / 32) / (w * r / 32), math.floor(h * r / 32) / (h * r / 32))
            patches = math.ceil(w * r / 32) * math.ceil(h * r / 32)
        return math.ceil(patches * multiplier)
    # whole patches on one side (a) leave at most one partial row on the other: a*b + a <= 2 * cap
    return ImageRule(f"openai-patches:x{multiplier}", count, lambda d: math.ceil(2 * cap * multiplier))


def anthropic(long_edge: int, area: int) -> ImageRule:
    def count(size: Size, detail: str | None) -> int:
        w, h = _fit(*size, long_edge=long_edge, area=area)
        w, h = math.ceil(w), math.ceil(h)
        return max(math.ceil(w * h / 750), math.ceil(w / 28) * math.ceil(h / 28))
    # the most patches an image within the limits can pad out to: (w/28 + 1)(h/28 + 1)
    worst = max(math.ceil(area / 750), math.ceil(area / 784 + 2 * long_edge / 28 + 1))
    return ImageRule(f"anthropic:{long_edge}px", count, lambda d: worst)


def gemini_tiles(per_tile: int = 258, small: int = 384, largest: int = 3072) -> ImageRule:
    def count(size: Size, detail: str | None) -> int:
        w, h = _fit(*size, long_edge=largest)
        if w <= small and h <= small:
            return per_tile
        unit = min(max(math.floor(min(w, h) / 1.5), 256), 768)
        tiles = max(math.ceil(w / unit) * math.ceil(h / unit), math.ceil(w / 768) * math.ceil(h / 768))
        return per_tile * tiles
    worst = per_tile * math.ceil(largest / 256) ** 2
    return ImageRule("gemini-tiles", count, lambda d: worst)


def fixed(tokens: int) -> ImageRule:
    return ImageRule(f"fixed:{tokens}", lambda s, d: tokens, lambda d: tokens)


def largest(*rules: ImageRule) -> ImageRule:
    """The larger of several rules (a vendor whose rule is not known exactly)."""
    return ImageRule("max(" + ",".join(r.name for r in rules) + ")",
                     lambda s, d: max(r.count(s, d) for r in rules),
                     lambda d: max(r.worst(d) for r in rules))


# model-name patterns, most specific first, per wire protocol
_OPENAI_TILES_4O = openai_tiles(85, 170)
_RULES: dict[str, list[tuple[re.Pattern[str], ImageRule]]] = {
    "openai": [
        (re.compile(r"gpt-4o-mini"), openai_tiles(2833, 5667)),
        (re.compile(r"gpt-4\.1-mini|gpt-5(\.\d+)?-mini"), openai_patches(1.62)),
        (re.compile(r"gpt-4\.1-nano|gpt-5(\.\d+)?-nano"), openai_patches(2.46)),
        (re.compile(r"o4-mini|codex-mini"), openai_patches(1.72)),
        (re.compile(r"computer-use"), openai_tiles(65, 129)),
        (re.compile(r"^(o1|o3)"), openai_tiles(75, 150)),
        (re.compile(r"^gpt-5"), openai_tiles(70, 140)),
        (re.compile(r"^(gpt-4|chatgpt-4o)"), _OPENAI_TILES_4O),
    ],
    "anthropic": [
        # the 1,568px generation: Claude 3.x and 4.x up to 4.6 (and Haiku 4.5)
        (re.compile(r"^claude-(3|[a-z]+-4(-[0-6])?(-\d{8})?$|[a-z]+-4-[0-6]-)"), anthropic(1568, 1600 * 750)),
    ],
    "google": [
        (re.compile(r"gemini-3"), fixed(1120)),
        (re.compile(r"gemini-(1|2)"), gemini_tiles()),
    ],
}
#: a model no pattern names: the larger of the rules its protocol's models follow
_FALLBACK: dict[str, ImageRule] = {
    "openai": largest(_OPENAI_TILES_4O, openai_patches(2.46)),
    "anthropic": anthropic(2576, 2576 * 2576),   # Opus 4.7 and later: 2,576px on the long edge
    "google": largest(gemini_tiles(), fixed(1120)),
}
_ANY = largest(_FALLBACK["openai"], _FALLBACK["anthropic"])


def rule_for(model: str, protocol: str | None) -> ImageRule:
    """The image rule of ``model`` spoken over ``protocol`` (the profile's adapter; None:
    whichever protocol's pattern names the model)."""
    bare = model.rsplit("/", 1)[-1].removeprefix("ft:")
    for name in (protocol,) if protocol else tuple(_RULES):
        for pattern, rule in _RULES.get(name or "", ()):
            if pattern.search(bare):
                return rule
    return _FALLBACK.get(protocol or "", _ANY)


def image_tokens(url: str, detail: str | None, model: str, protocol: str | None) -> int:
    """Prompt tokens one image costs: by its size when the URL carries it, else the maximum."""
    return rule_for(model, protocol).tokens(image_size(url), detail)
