"""Time `import unillm` (and `from unillm import Client`) in fresh interpreters.

Prints the median of N runs next to `import pydantic` (our one heavy dependency)
and a bare interpreter, so the figure means something on any machine.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

RUNS = 15


def timed(code: str) -> float:
    samples = []
    for _ in range(RUNS):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def main() -> None:
    base = timed("pass")
    rows = [("python -c pass", base),
            ("import pydantic", timed("import pydantic")),
            ("import unillm", timed("import unillm")),
            ("from unillm import Client", timed("from unillm import Client"))]
    print(f"{'what':32} {'median ms':>10} {'minus interpreter':>18}")
    for name, ms in rows:
        print(f"{name:32} {ms:10.1f} {ms - base:18.1f}")


if __name__ == "__main__":
    main()
