"""A separate process for the routing tests: its own Client on a shared ledger.

    python _route_worker.py EAST_URL WEST_URL LEDGER PRICES N   -> prints {"ok": N, "limited": M}
    python _route_worker.py hang EAST_URL WEST_URL LEDGER PRICES -> one least-busy call, left to be killed
"""

from __future__ import annotations

import json
import sys

from unillm import Client, errors


def _client(east: str, west: str, ledger: str, prices: str, **kw: object) -> Client:
    return Client(providers={"east": {"adapter": "openai", "base_url": east, "api_key": "k", "max_retries": 0},
                             "west": {"adapter": "openai", "base_url": west, "api_key": "k", "max_retries": 0}},
                  ledger=ledger, pricing=prices, **kw)


def rpm(east: str, west: str, ledger: str, prices: str, n: int) -> None:
    client = _client(east, west, ledger, prices,
                     deployments=[{"model": "gpt-4o", "provider": "east", "rpm": 7},
                                  {"model": "gpt-4o", "provider": "west", "rpm": 5}])
    counts = {"ok": 0, "limited": 0}
    for _ in range(n):
        try:
            client.chat("gpt-4o", [{"role": "user", "content": "hi"}])
            counts["ok"] += 1
        except errors.RateLimitError:
            counts["limited"] += 1
    client.close()
    print(json.dumps(counts), flush=True)


def hang(east: str, west: str, ledger: str, prices: str) -> None:
    """A call its deployment keeps waiting on (its in-flight lease lives for call_deadline)."""
    client = _client(east, west, ledger, prices, call_deadline=20, routing={"strategy": "least-busy"},
                     deployments=[{"model": "gpt-4o", "provider": "east"}, {"model": "gpt-4o", "provider": "west"}])
    client.chat("gpt-4o", [{"role": "user", "content": "hi"}])


if __name__ == "__main__":
    if sys.argv[1] == "hang":
        hang(*sys.argv[2:6])
    else:
        rpm(*sys.argv[1:5], int(sys.argv[5]))
