"""Per-input overhead of ``client.embed`` vs the raw openai SDK's ``embeddings.create``, against
FakeProvider on loopback (in its own process, as a real vendor would be).

One round embeds N short inputs (10,000 by default) both ways: the raw SDK in batches of
2048 (OpenAI's most inputs a request, as a caller would have to batch them), and
``client.embed`` with all N at once (it batches the same way and writes one ledger row per
request). Both ask for base64 vectors of 256 dimensions and decode them. The two sides run
interleaved, in random order each round; medians of the rounds are reported, with the ratio
and the added time per input. Usage: python bench/bench_embed.py [N] [ROUNDS]
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(Path(__file__).resolve().parents[1] / "tests" / "data" / "tiktoken"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import openai  # noqa: E402
from bench_overhead import _server, interleaved  # noqa: E402

from unillm import Client  # noqa: E402

MODEL = "text-embedding-3-small"
DIMS = 256
BATCH = 2048


def measure(n: int, rounds: int, ledger: str, label: str, **client_kw: object) -> None:
    texts = [f"passage {i}: a short chunk of a document to index" for i in range(n)]
    with _server() as url:
        raw = openai.OpenAI(api_key="k", base_url=url + "/v1", max_retries=0)
        client = Client(providers={"openai": {"base_url": url + "/v1", "api_key": "k"}}, ledger=ledger,
                        **client_kw)

        def run_raw() -> int:
            got = 0
            for start in range(0, n, BATCH):
                resp = raw.embeddings.create(model=MODEL, input=texts[start:start + BATCH], dimensions=DIMS)
                got += len(resp.data)
            return got

        def run_ours() -> int:
            return len(client.embed(MODEL, texts, dimensions=DIMS).data)

        for _ in range(2):  # warm both: connections, lazy imports, the encoder
            assert run_raw() == run_ours() == n
        times = interleaved({"raw": run_raw, "ours": run_ours}, rounds)
        client.close()
    m_raw, m_ours = statistics.median(times["raw"]), statistics.median(times["ours"])
    print(f"{label:26} raw openai {m_raw * 1e3:8.1f} ms   unillm {m_ours * 1e3:8.1f} ms   "
          f"ratio {m_ours / m_raw:5.3f}   added {(m_ours - m_raw) / n * 1e6:6.2f} µs/input")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 15
    print(f"{n} inputs a round, {rounds} rounds, {DIMS} dimensions, batches of {BATCH}")
    measure(n, rounds, "off", "embed, ledger off")
    with tempfile.TemporaryDirectory() as d:
        measure(n, rounds, f"sqlite:///{d}/ledger.db", "embed, sqlite ledger")
    with tempfile.TemporaryDirectory() as d:
        measure(n, rounds, f"sqlite:///{d}/ledger.db", "embed, sqlite + budget",
                budgets=[{"name": "bench", "limit_usd": 10**6}])


if __name__ == "__main__":
    main()
