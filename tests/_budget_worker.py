"""A separate process for the budget tests: its own Client on a shared ledger.

    python _budget_worker.py stress BASE_URL LEDGER BUDGETS_JSON   -> prints {"ok": N, "denied": M}
    python _budget_worker.py hang   BASE_URL LEDGER BUDGETS_JSON   -> prints "calling", then blocks
"""

from __future__ import annotations

import json
import sys
import threading

from unillm import Client, errors

mode, base_url, ledger, budgets = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
client = Client(providers={"openai": {"base_url": base_url, "api_key": "k", "max_retries": 0}},
                ledger=ledger, budgets=budgets)
HI = [{"role": "user", "content": "hi"}]

if mode == "hang":
    print("calling", flush=True)
    client.chat(model="gpt-4o-mini", messages=HI, max_tokens=5)
    sys.exit(0)

counts = {"ok": 0, "denied": 0, "errors": []}
lock = threading.Lock()


def work() -> None:
    for _ in range(5):
        try:
            client.chat(model="gpt-4o-mini", messages=HI, max_tokens=50)
            key = "ok"
        except errors.BudgetExceededError:
            key = "denied"
        except Exception as exc:  # anything else is a finding: report it, never lose it
            with lock:
                counts["errors"].append(f"{type(exc).__name__}: {exc}")
            continue
        with lock:
            counts[key] += 1


threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(counts), flush=True)
