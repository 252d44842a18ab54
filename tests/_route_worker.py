"""A separate process for the routing tests: its own Client on a shared ledger.

    python _route_worker.py EAST_URL WEST_URL LEDGER PRICES N   -> prints {"ok": N, "limited": M}
"""

from __future__ import annotations

import json
import sys

from unillm import Client, errors

east, west, ledger, prices, n = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
client = Client(providers={"east": {"adapter": "openai", "base_url": east, "api_key": "k", "max_retries": 0},
                           "west": {"adapter": "openai", "base_url": west, "api_key": "k", "max_retries": 0}},
                ledger=ledger, pricing=prices,
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
