"""Counting speed: 100k tokens of text must count in <= 20 ms (encoder cached).

Run: TIKTOKEN_CACHE_DIR=tests/data/tiktoken python bench/bench_tokens.py
Prints the best of N runs per encoding and text kind, scaled to 100k tokens, and
exits 1 if any case is over budget. Then a conversation: the prompt of every turn
of a 60-turn chat counted as the Client does (`count_prompt`), with the count cache
emptied before every turn (each turn counts its whole history) and kept across
turns (only the new messages are encoded). Timings depend on the machine and its
load; only the best run of each case is shown.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from unillm import tokens
from unillm.types import ChatRequest

BUDGET_MS = 20.0
TARGET_TOKENS = 100_000
TURNS = 60


def _sample(kind: str) -> str:
    if kind == "code":
        return Path(tokens.__file__).read_text()
    return ("The quick brown fox jumps over the lazy dog while the committee reviews "
            "the quarterly budget, and nobody remembers who ordered forty pizzas. ")


def _text(kind: str, encoding: str) -> str:
    unit = _sample(kind)
    per_unit = tokens.count_text(unit, encoding)
    if per_unit is None:
        sys.exit(f"{encoding} cannot be loaded: set TIKTOKEN_CACHE_DIR")
    return unit * (TARGET_TOKENS * 102 // 100 // per_unit + 1)  # + 2%: merges across repeats


def _best(fn, runs: int) -> float:
    """Best wall time of ``fn()`` over ``runs`` runs, in ms."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return min(times)


def texts(runs: int = 15) -> float:
    """The issue's case: one long text; returns the worst ms per 100k tokens."""
    worst = 0.0
    for encoding in ("o200k_base", "cl100k_base"):
        for kind in ("prose", "code"):
            text = _text(kind, encoding)
            n = tokens.count_text(text, encoding)
            best = _best(lambda t=text, e=encoding: tokens.count_text(t, e), runs) * TARGET_TOKENS / n
            worst = max(worst, best)
            print(f"{encoding:12} {kind:6} {n:>7} tokens  best {best:6.2f} ms per 100k tokens")
    return worst


def _conversation() -> list[ChatRequest]:
    """A system prompt and 60 turns of prose and code (100-300 tokens each), history re-sent."""
    code, prose = _sample("code"), _sample("prose")
    messages = [{"role": "system", "content": prose * 8}]
    for i in range(TURNS):
        body = code[i * 1000 % len(code):][:1000] if i % 2 else f"{prose * 4} (turn {i})"
        messages.append({"role": "assistant" if i % 2 else "user", "content": body})
    return [ChatRequest(model="gpt-4o", messages=messages[:k + 2]) for k in range(TURNS)]


def conversation(runs: int = 5) -> None:
    requests = _conversation()
    tokens_last = tokens.count_prompt(requests[-1], "gpt-4o")[0]

    def cold() -> None:
        for r in requests:
            tokens.count_cache_clear()
            tokens.count_prompt(r, "gpt-4o")

    def warm() -> None:
        tokens.count_cache_clear()
        for r in requests:
            tokens.count_prompt(r, "gpt-4o")

    for name, fn in (("whole history every turn", cold), ("count cache across turns", warm)):
        total = _best(fn, runs)
        print(f"conversation {TURNS} turns ({tokens_last} prompt tokens at the end), {name}: "
              f"best {total:6.2f} ms in all, {total / TURNS:5.3f} ms a turn")


def main() -> int:
    worst = texts()
    print(f"budget {BUDGET_MS} ms: {'ok' if worst <= BUDGET_MS else 'OVER'}")
    conversation()
    return 0 if worst <= BUDGET_MS else 1


if __name__ == "__main__":
    sys.exit(main())
