"""Counting speed: 100k tokens of text must count in <= 20 ms (encoder cached).

Run: TIKTOKEN_CACHE_DIR=../shared/tiktoken python bench/bench_tokens.py
Prints the best of N runs per encoding and text kind, scaled to 100k tokens;
exits 1 if any case is over budget. Timings depend on the machine and its load.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from unillm import tokens

BUDGET_MS = 20.0
TARGET_TOKENS = 100_000


def _sample(kind: str) -> str:
    if kind == "code":
        return (Path(tokens.__file__).read_text())
    return ("The quick brown fox jumps over the lazy dog while the committee reviews "
            "the quarterly budget, and nobody remembers who ordered forty pizzas. ")


def _text(kind: str, encoding: str) -> str:
    unit = _sample(kind)
    per_unit = tokens.count_text(unit, encoding)
    if per_unit is None:
        sys.exit(f"{encoding} cannot be loaded: set TIKTOKEN_CACHE_DIR")
    return unit * (TARGET_TOKENS * 102 // 100 // per_unit + 1)  # + 2%: merges across repeats


def main(runs: int = 15) -> int:
    worst = 0.0
    for encoding in ("o200k_base", "cl100k_base"):
        for kind in ("prose", "code"):
            text = _text(kind, encoding)
            n = tokens.count_text(text, encoding)
            best = min(_time(text, encoding) for _ in range(runs)) * TARGET_TOKENS / n
            worst = max(worst, best)
            print(f"{encoding:12} {kind:6} {n:>7} tokens  best {best:6.2f} ms per 100k tokens")
    print(f"budget {BUDGET_MS} ms: {'ok' if worst <= BUDGET_MS else 'OVER'}")
    return 0 if worst <= BUDGET_MS else 1


def _time(text: str, encoding: str) -> float:
    start = time.perf_counter()
    tokens.count_text(text, encoding)
    return (time.perf_counter() - start) * 1000


if __name__ == "__main__":
    sys.exit(main())
