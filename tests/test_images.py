"""Images in prompts are counted by each vendor's published rule, so budget holds bound the bill.

The reference rules below are written again, independently of unillm.images, from the
vendors' own pages (cited in unillm/images.py); the property test checks that the count
a budget holds is never below what any image, of any size and detail, is billed.
"""

from __future__ import annotations

import base64
import io
import math
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from unillm import Client, errors
from unillm.images import image_size, rule_for
from unillm.testing import FakeProvider, Reply
from unillm.tokens import count_prompt
from unillm.types import ChatRequest


def data_url(w: int, h: int, fmt: str = "PNG", **save: object) -> str:
    buf = io.BytesIO()
    Image.new("RGB", (w, h), (200, 30, 30)).save(buf, format=fmt, **save)
    mime = {"PNG": "png", "JPEG": "jpeg", "GIF": "gif", "WEBP": "webp"}[fmt]
    return f"data:image/{mime};base64,{base64.b64encode(buf.getvalue()).decode()}"


def header_only_png(w: int, h: int) -> str:
    """A PNG's signature and IHDR chunk: all a size needs, for sizes too large to encode fast."""
    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + b"\x08\x02\x00\x00\x00"
    raw = b"\x89PNG\r\n\x1a\n" + (13).to_bytes(4, "big") + b"IHDR" + ihdr + b"\x00\x00\x00\x00"
    return "data:image/png;base64," + base64.b64encode(raw).decode()


def image_request(model: str, url: str, detail: str | None = None, n: int = 1) -> ChatRequest:
    image = {"url": url, **({"detail": detail} if detail else {})}
    parts = [{"type": "text", "text": "what is this?"}] + [{"type": "image_url", "image_url": image}] * n
    return ChatRequest(model=model, messages=[{"role": "user", "content": parts}])


# ── sizes are read from the image itself ─────────────────────────────────────

@pytest.mark.parametrize("fmt, extra", [("PNG", {}), ("JPEG", {}), ("JPEG", {"progressive": True}),
                                        ("GIF", {}), ("WEBP", {}), ("WEBP", {"lossless": True})])
def test_sizes_come_from_real_png_jpeg_gif_and_webp_files(fmt: str, extra: dict) -> None:
    for w, h in ((1, 1), (640, 480), (333, 2049), (4000, 17)):
        assert image_size(data_url(w, h, fmt, **extra)) == (w, h), (fmt, w, h)


def test_an_unreadable_or_remote_image_has_no_size() -> None:
    assert image_size("https://example.com/cat.png") is None
    assert image_size("data:image/png;base64,not base64 at all!!") is None
    assert image_size("data:image/png;base64," + base64.b64encode(b"GIF89a").decode()) is None
    assert image_size("data:text/plain,hello") is None


# ── the vendors' documented examples ─────────────────────────────────────────

def tokens_of(model: str, protocol: str, size: tuple[int, int] | None, detail: str | None = None) -> int:
    return rule_for(model, protocol).tokens(size, detail)


def test_openai_documented_examples() -> None:
    # OpenAI "Images and vision", Calculating costs: gpt-4o
    assert tokens_of("gpt-4o", "openai", (1024, 1024), "high") == 765
    assert tokens_of("gpt-4o", "openai", (2048, 4096), "high") == 1105
    assert tokens_of("gpt-4o", "openai", (4096, 8192), "low") == 85
    # gpt-4o-mini bills images at 2,833 + 5,667 a tile: a 1024x1024 high-detail image is 25,501
    assert tokens_of("gpt-4o-mini", "openai", (1024, 1024), "high") == 25_501
    # patch models: 1024x1024 is 32x32 patches = 1,024, times gpt-4.1-mini's 1.62
    assert tokens_of("gpt-4.1-mini", "openai", (1024, 1024)) == math.ceil(1024 * 1.62)
    # an image whose size is unknown (a URL) holds the most any image can cost
    assert tokens_of("gpt-4o", "openai", None, "high") == 85 + 8 * 170
    assert tokens_of("gpt-4o", "openai", None, "low") == 85


def test_anthropic_and_gemini_documented_examples() -> None:
    # Anthropic: ~1,334 for 1000x1000, ~1,590 for 1092x1092 (width*height/750)
    assert tokens_of("claude-sonnet-4-5", "anthropic", (1000, 1000)) == 1334
    assert tokens_of("claude-sonnet-4-5", "anthropic", (1092, 1092)) == 1590
    # larger images are scaled down first: a 6 MP photo costs what its 1.2 MP copy costs
    assert tokens_of("claude-sonnet-4-5", "anthropic", (3000, 2000)) <= 1650
    # Opus 4.7 reads up to 2,576px: the same photo costs more there
    assert tokens_of("claude-opus-4-7", "anthropic", (3000, 2000)) > 4000
    # Gemini 2.x: within 384x384 one 258-token tile
    assert tokens_of("gemini-2.5-flash", "google", (384, 384)) == 258
    assert tokens_of("gemini-2.5-flash", "google", (768, 768)) >= 258
    assert tokens_of("gemini-3-pro-preview", "google", (4000, 3000)) == 1120


# ── the property: a hold never counts an image for less than it is billed ────

def ref_openai_tiles(w: int, h: int, detail: str | None, base: int, tile: int) -> int:
    if detail == "low":
        return base
    if max(w, h) > 2048:
        w, h = w * 2048 / max(w, h), h * 2048 / max(w, h)
    if min(w, h) > 768:
        w, h = w * 768 / min(w, h), h * 768 / min(w, h)
    return base + tile * math.ceil(w / 512) * math.ceil(h / 512)


def ref_openai_patches(w: int, h: int, multiplier: float) -> int:
    patches = math.ceil(w / 32) * math.ceil(h / 32)
    if patches > 1536:  # OpenAI's documented shrink: fit 1,536 patches, then whole patches
        r = math.sqrt(32 * 32 * 1536 / (w * h))
        r *= min(math.floor(w * r / 32) / (w * r / 32), math.floor(h * r / 32) / (h * r / 32))
        patches = math.ceil(w * r / 32) * math.ceil(h * r / 32)
    return math.ceil(patches * multiplier)


def ref_anthropic(w: int, h: int, long_edge: int) -> int:
    scale = min(1.0, long_edge / max(w, h))
    if long_edge == 1568:
        scale = min(scale, math.sqrt(1600 * 750 / (w * h)))  # "more than ~1,600 tokens"
    w, h = round(w * scale), round(h * scale)
    return max(math.ceil(w * h / 750), math.ceil(w / 28) * math.ceil(h / 28))


def ref_gemini(w: int, h: int) -> int:
    if max(w, h) > 3072:
        w, h = w * 3072 / max(w, h), h * 3072 / max(w, h)
    if w <= 384 and h <= 384:
        return 258
    return 258 * math.ceil(w / 768) * math.ceil(h / 768)


BILLED = {
    "gpt-4o": lambda w, h, d: ref_openai_tiles(w, h, d, 85, 170),
    "gpt-4.1": lambda w, h, d: ref_openai_tiles(w, h, d, 85, 170),
    "gpt-4o-mini": lambda w, h, d: ref_openai_tiles(w, h, d, 2833, 5667),
    "gpt-5": lambda w, h, d: ref_openai_tiles(w, h, d, 70, 140),
    "o3": lambda w, h, d: ref_openai_tiles(w, h, d, 75, 150),
    "gpt-4.1-mini": lambda w, h, d: ref_openai_patches(w, h, 1.62),
    "gpt-4.1-nano": lambda w, h, d: ref_openai_patches(w, h, 2.46),
    "o4-mini": lambda w, h, d: ref_openai_patches(w, h, 1.72),
    "claude-sonnet-4-5": lambda w, h, d: ref_anthropic(w, h, 1568),
    "claude-3-5-haiku-20241022": lambda w, h, d: ref_anthropic(w, h, 1568),
    "claude-opus-4-7": lambda w, h, d: ref_anthropic(w, h, 2576),
    "gemini-2.5-flash": lambda w, h, d: ref_gemini(w, h),
}
PROVIDER = {"claude": "anthropic", "gemini": "google"}


@settings(max_examples=1500, deadline=None)
@given(model=st.sampled_from(sorted(BILLED)), w=st.integers(1, 8000), h=st.integers(1, 8000),
       detail=st.sampled_from([None, "auto", "low", "high"]), remote=st.booleans(),
       n=st.integers(1, 3))
def test_a_budget_hold_counts_every_image_at_least_as_billed(model: str, w: int, h: int,
                                                            detail: str | None, remote: bool,
                                                            n: int) -> None:
    from unillm.profiles import build_settings
    provider = PROVIDER.get(model.split("-")[0], "openai")
    text_only = count_prompt(ChatRequest(model=model, messages=[{"role": "user", "content": "what is this?"}]),
                             model, build_settings()[provider])[0]
    url = "https://example.com/photo.png" if remote else header_only_png(w, h)
    held, source = count_prompt(image_request(model, url, detail, n), model, build_settings()[provider])
    assert source == "estimate"
    assert held - text_only >= n * BILLED[model](w, h, detail), (model, w, h, detail, remote)


# ── end to end: the budget refuses what it used to let through ───────────────

def test_a_large_image_on_gpt_4o_mini_is_refused_by_a_budget_it_would_overshoot(
        fake: FakeProvider, tmp_path: Path) -> None:
    # 25,501 image tokens at $0.15/M: $0.0038 — over a $0.001 budget, so nothing is sent
    fake.default = Reply(usage={"input_tokens": 25_520, "output_tokens": 5})
    client = Client(providers=fake.providers(), ledger=f"sqlite:///{tmp_path / 'l.db'}",
                    budgets=[{"name": "tiny", "limit_usd": "0.001"}])
    messages = image_request("gpt-4o-mini", data_url(1024, 1024), "high").model_dump(exclude_none=True)["messages"]
    with pytest.raises(errors.BudgetExceededError) as info:
        client.chat(model="gpt-4o-mini", messages=messages, max_tokens=10)
    assert info.value.estimate > Decimal("0.0038") and fake.requests == []


def test_ten_tall_images_hold_at_least_what_gpt_4o_bills(fake: FakeProvider, tmp_path: Path) -> None:
    # 10 images of 2048x4096 at high detail: 10 x 1,105 = 11,050 tokens billed
    request = image_request("gpt-4o", header_only_png(2048, 4096), "high", n=10)
    from unillm.profiles import build_settings
    held, _ = count_prompt(request, "gpt-4o", build_settings()["openai"])
    assert held >= 11_050
