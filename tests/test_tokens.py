"""Token counting against OpenAI's published numbers, and the offline fallback.

Expected counts come from tests/data/refs/tokens.json, which cites its sources:
openai/openai-cookbook examples/How_to_count_tokens_with_tiktoken.ipynb
(commit c81359cdc6744f001e40c08a192604c5113fdab3: o200k_base, gpt-4o, the tools
section; commit 06d9feb5e21e6fdc85f3ddce7731e05892758cd7: cl100k_base) and
openai/tiktoken tests/test_encoding.py (commit 1a730c52c5322591e4784c106f7ce538344e2bea).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from unillm import tokens
from unillm.profiles import build_settings
from unillm.types import ChatRequest, Message, Tool

from .conftest import REFS

TOKENS = json.loads((REFS / "tokens.json").read_text())
ENCODINGS = ("cl100k_base", "o200k_base")
REPO = Path(__file__).resolve().parents[1]


def _string_cases():
    for case in TOKENS["string_cases"]:
        for enc in ENCODINGS:
            ids = case.get("token_ids", {}).get(enc)
            count = case.get("counts", {}).get(enc, len(ids) if ids is not None else None)
            if count is not None and "<|" not in case["text"]:
                yield pytest.param(case["text"], enc, count, id=f"{enc}:{case['text'][:20]}")


@pytest.mark.parametrize("text,encoding,expected", list(_string_cases()))
def test_count_text_matches_published_counts(text, encoding, expected):
    assert tokens.count_text(text, encoding) == expected


def test_special_token_text_counts_as_plain_text():
    # a user typing "<|endoftext|>" must not crash counting (the API treats it as text)
    assert tokens.count_text("hello <|endoftext|>", "cl100k_base") > 3


def _chat_case():
    case = TOKENS["chat_message_cases"][0]
    return [Message(**m) for m in case["messages"]], case["by_encoding"]


@pytest.mark.parametrize("encoding,key", [
    ("cl100k_base", "cl100k_base (tokens_per_message=3, tokens_per_name=1)"),
    ("o200k_base", "o200k_base (tokens_per_message=3, tokens_per_name=1)"),
])
def test_count_messages_reproduces_cookbook_example(encoding, key):
    # cookbook cell 15: 129 prompt tokens for gpt-4/gpt-3.5-turbo, 124 for gpt-4o/gpt-4o-mini
    messages, expected = _chat_case()
    assert tokens.count_messages(messages, None, encoding) == expected[key]


@pytest.mark.parametrize("model", ["gpt-3.5-turbo", "gpt-4", "gpt-4o", "gpt-4o-mini"])
def test_count_prompt_with_tools_reproduces_cookbook_example(model):
    # cookbook cells 16-17 (num_tokens_for_tools): 105 for gpt-3.5-turbo/gpt-4, 101 for gpt-4o(-mini)
    case = TOKENS["tools_case"]
    request = ChatRequest(model=model, messages=case["messages"], tools=case["tools"])
    assert tokens.count_prompt(request, model) == (case["expected_prompt_tokens"][model], "tiktoken")


def test_tools_add_tokens_only_when_present():
    case = TOKENS["tools_case"]
    msgs = [Message(**m) for m in case["messages"]]
    tools = [Tool(**t) for t in case["tools"]]
    # o200k: 33 message tokens + 68 tool tokens (local verification in tokens.json)
    assert tokens.count_messages(msgs, None, "o200k_base") == 33
    assert tokens.count_tools(tools, "o200k_base") == 68
    assert tokens.count_tools([], "o200k_base") == 0


@pytest.mark.parametrize("model,encoding", [
    ("gpt-4o", "o200k_base"), ("gpt-4o-mini-2024-07-18", "o200k_base"), ("gpt-4.1-nano", "o200k_base"),
    ("gpt-4.5-preview", "o200k_base"), ("o1", "o200k_base"), ("o3-mini", "o200k_base"),
    ("o4-mini", "o200k_base"), ("gpt-5", "o200k_base"), ("gpt-5-nano", "o200k_base"),
    ("chatgpt-4o-latest", "o200k_base"), ("gpt-4", "cl100k_base"), ("gpt-4-turbo", "cl100k_base"),
    ("gpt-3.5-turbo", "cl100k_base"), ("ft:gpt-4o-mini:acme::abc", "o200k_base"),
])
def test_encoding_for_openai_models_is_exact(model, encoding):
    # same table as tiktoken.encoding_for_model (tokens.json "encoding_for_model_in_tiktoken_0_14_0")
    assert tokens.encoding_for(model) == (encoding, True)
    assert tokens.encoding_for(model, build_settings()["openai"]) == (encoding, True)


def test_encoding_for_other_vendors_uses_profile_and_is_an_estimate():
    s = build_settings()
    assert tokens.encoding_for("claude-sonnet-4-5", s["anthropic"]) == ("cl100k_base", False)
    assert tokens.encoding_for("gemini-2.5-flash", s["google"]) == ("o200k_base", False)
    # an OpenAI model behind a router: the right encoding, but not the vendor's own count
    assert tokens.encoding_for("openai/gpt-4o", s["openrouter"]) == ("o200k_base", False)


def test_count_usage_when_vendor_reports_none():
    messages, expected = _chat_case()
    request = ChatRequest(model="gpt-4o", messages=messages)
    completion = 'Let\'s not boil the ocean.get_weather{"city": "Paris"}'
    usage = tokens.count_usage(request, completion, "gpt-4o", build_settings()["openai"])
    assert usage.source == "tiktoken"
    assert usage.input_tokens == expected["o200k_base (tokens_per_message=3, tokens_per_name=1)"]
    assert usage.output_tokens == tokens.count_text(completion, "o200k_base") > 0
    assert usage.cache_read_tokens == 0


def test_count_usage_for_non_openai_vendor_is_marked_estimate():
    request = ChatRequest(model="claude-haiku-4-5", messages=[{"role": "user", "content": "hello world"}])
    usage = tokens.count_usage(request, "hi", "claude-haiku-4-5", build_settings()["anthropic"])
    assert usage.source == "estimate"
    assert usage.input_tokens == 3 + 1 + 2 + 3  # per message + "user" + "hello world" + priming


def test_images_make_the_count_an_estimate_and_cost_tokens():
    text_only = ChatRequest(model="gpt-4o", messages=[{"role": "user", "content": "what is this?"}])
    with_image = ChatRequest(model="gpt-4o", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}}]}])
    n_text, source_text = tokens.count_prompt(text_only, "gpt-4o")
    n_image, source_image = tokens.count_prompt(with_image, "gpt-4o")
    assert (source_text, source_image) == ("tiktoken", "estimate")
    assert n_image == n_text + 85  # a low-detail image on gpt-4o: the base, whatever its size


def test_prompt_usage_estimate_is_all_uncached_input():
    request = ChatRequest(model="gpt-4o", messages=[{"role": "user", "content": "hello world"}])
    usage = tokens.prompt_usage_estimate(request, "gpt-4o")
    assert (usage.input_tokens, usage.output_tokens, usage.source) == (9, 0, "tiktoken")


# ── the count cache (repeated conversation history) ─────────────────────────

LONG = "Please summarise the attached quarterly report in three bullet points for the board. "


def _history(turns: int) -> list[dict[str, str]]:
    return [{"role": "user" if i % 2 == 0 else "assistant", "content": f"{LONG * (i % 3 + 1)}(turn {i})"}
            for i in range(turns)]


def _by_hand(messages: list[dict[str, str]], encoding: str) -> int:
    """The cookbook's formula with count_text (which never uses the cache)."""
    return 3 + sum(3 + tokens.count_text(m["role"], encoding) + tokens.count_text(m["content"], encoding)
                   for m in messages)


def test_repeated_history_is_counted_from_the_cache_with_the_same_result():
    tokens.count_cache_clear()
    history = _history(8)
    first = tokens.count_messages([Message(**m) for m in history], None, "o200k_base")
    after_first = tokens.count_cache_info()
    assert after_first.misses == 8 and after_first.hits == 0  # roles are short: never cached
    # the next turn re-sends the history plus one message: only the new one is encoded
    history.append({"role": "user", "content": LONG + "And the risks?"})
    second = tokens.count_messages([Message(**m) for m in history], None, "o200k_base")
    info = tokens.count_cache_info()
    assert (info.hits, info.misses, info.currsize) == (8, 9, 9)
    assert first == _by_hand(history[:-1], "o200k_base")
    assert second == _by_hand(history, "o200k_base")


def test_cached_counts_are_per_encoding():
    tokens.count_cache_clear()
    text = "naïve café — straße 東京 " * 20  # counts differ between the two encodings
    expected = {enc: tokens.count_text(text, enc) for enc in ENCODINGS}
    assert expected["cl100k_base"] != expected["o200k_base"]
    for _ in range(2):
        for enc in ENCODINGS:
            assert tokens.count_messages([Message(role="user", content=text)], None, enc) == \
                3 + 1 + expected[enc] + 3


def test_count_cache_evicts_least_recently_used():
    cache = tokens._CountCache(maxsize=2, min_chars=1)
    a, b, c = "alpha " * 20, "bravo " * 20, "charlie " * 20
    cache.count(a, "o200k_base"), cache.count(b, "o200k_base")
    cache.count(a, "o200k_base")          # a is now the most recently used
    cache.count(c, "o200k_base")          # evicts b
    assert cache.info().currsize == 2
    hits = cache.info().hits
    assert cache.count(a, "o200k_base") == tokens.count_text(a, "o200k_base")
    assert cache.info().hits == hits + 1
    cache.count(b, "o200k_base")
    assert cache.info().hits == hits + 1  # b was a miss


def test_count_cache_handles_lone_surrogates():
    text = "broken \ud800 surrogate " * 10
    assert tokens.count_messages([Message(role="user", content=text)], None, "cl100k_base") == \
        3 + 1 + tokens.count_text(text, "cl100k_base") + 3


def _heuristic_samples():
    yield from (c["text"] for c in TOKENS["string_cases"] if c["text"])
    for path in sorted((REFS / "responses").glob("*.json")):
        yield path.read_text()
    yield (REPO / "unillm" / "tokens.py").read_text()
    yield "Привет, как дела? 你好世界，今天天气很好。 🎉👍 naïve café 1234567 !!?? \n\n\t  x=1;"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_heuristic_errs_high_but_not_absurdly(encoding):
    for text in _heuristic_samples():
        exact = tokens.count_text(text, encoding)
        guess = tokens.heuristic_count(text)
        assert guess >= exact, text[:40]
        if exact > 200:
            assert guess <= 2.5 * exact, text[:40]


_OFFLINE_SCRIPT = textwrap.dedent("""
    import json, os, sys, warnings
    before = os.environ["TIKTOKEN_CACHE_DIR"]
    from unillm import tokens
    from unillm.types import ChatRequest
    req = ChatRequest(model="gpt-4o", messages=[{"role": "user", "content": "hello world"}])
    long = ChatRequest(model="gpt-4o", messages=[{"role": "user", "content": "hello world " * 20}])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tokens.count_prompt(long, "gpt-4o")
        first = tokens.count_prompt(req, "gpt-4o")
        usage = tokens.count_usage(req, "hi there", "gpt-4o")
        text = tokens.count_text("hello", "cl100k_base")
    print(json.dumps({
        "first": first, "usage": [usage.input_tokens, usage.output_tokens, usage.source],
        "text": text, "warnings": [str(w.category.__name__) for w in caught],
        "env_same": os.environ["TIKTOKEN_CACHE_DIR"] == before,
        "cache_files": os.listdir(before), "cached": tokens.count_cache_info().currsize,
    }))
""")


def test_offline_fallback_estimates_and_warns_once(tmp_path):
    # an empty cache dir and no network: tiktoken cannot load any encoding
    empty = tmp_path / "tiktoken-empty"
    empty.mkdir()
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(empty), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", _OFFLINE_SCRIPT], env=env, capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["first"][1] == "estimate" and out["first"][0] >= 9  # exact o200k count is 9
    assert out["usage"][2] == "estimate" and out["usage"][1] >= 2
    assert out["text"] is None
    assert out["warnings"] == ["TokenEstimateWarning"]  # once per process, not per call
    assert out["env_same"] and out["cache_files"] == []
    assert out["cached"] == 0  # estimates are never remembered as counts


def test_import_unillm_does_not_load_tiktoken_or_prices():
    code = ("import sys, unillm; unillm.Usage; "
            "print(sorted(m for m in ('tiktoken', 'unillm.tokens', 'unillm.pricing') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_importing_tokens_does_not_import_tiktoken():
    code = "import sys, unillm.tokens; print('tiktoken' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.stdout.strip() == "False", proc.stderr
