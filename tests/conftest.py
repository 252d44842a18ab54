"""Shared fixtures: an isolated environment and a FakeProvider per test."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from unillm.testing import FakeProvider

DATA = Path(__file__).resolve().parent / "data"
#: vendor reference payloads and OpenAI's token counts, each citing its source (data/refs/README.md)
REFS = DATA / "refs"

# tiktoken cannot download here: its cl100k_base and o200k_base files ship under tests/data,
# in tiktoken's own cache format; a TIKTOKEN_CACHE_DIR the caller set wins
os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(DATA / "tiktoken"))

_KEY_VARS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "CO_API_KEY",
             "COHERE_API_KEY", "GROQ_API_KEY", "MISTRAL_API_KEY", "TOGETHER_API_KEY", "DEEPSEEK_API_KEY",
             "OPENROUTER_API_KEY", "XAI_API_KEY", "FIREWORKS_API_KEY", "PERPLEXITY_API_KEY",
             "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "GOOGLE_GEMINI_BASE_URL", "CO_API_URL")


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's keys, home or ledger."""
    for var in _KEY_VARS:
        monkeypatch.delenv(var, raising=False)
    for var in ("UNILLM_CACHE", "UNILLM_LEDGER", "UNILLM_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("UNILLM_HOME", str(tmp_path / "unillm-home"))


@pytest.fixture
def fake():
    with FakeProvider() as server:
        yield server


def rec(**kw):
    """A CallRecord for store tests: 100 in / 10 out tokens on openai/gpt-4o unless overridden
    (``tin``, ``tout``, ``cost``, ``provider``, ``model``, or any CallRecord field)."""
    from decimal import Decimal

    from unillm.ledger import CallRecord
    from unillm.types import Cost, Usage
    usage = Usage(input_tokens=kw.pop("tin", 100), output_tokens=kw.pop("tout", 10))
    cost = kw.pop("cost", Cost(input_usd=Decimal("0.00025"), output_usd=Decimal("0.0001")))
    return CallRecord.from_parts(provider=kw.pop("provider", "openai"),
                                 model=kw.pop("model", "gpt-4o"), usage=usage, cost=cost, **kw)


def ref(name: str):
    """The body of a vendor reference payload from tests/data/refs/responses."""
    return json.loads((REFS / "responses" / f"{name}.json").read_text())["body"]
