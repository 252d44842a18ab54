"""A webhook sender in its own process: a Client whose rule fires ``optimization.applied``.

    python _webhook_sender.py CONFIG send N   -> N calls (one event each); prints "sent"; blocks
    python _webhook_sender.py CONFIG resume   -> delivers what the outbox holds; prints "flushed"
"""

from __future__ import annotations

import sys
import time

from unillm import Client

client = Client.from_config(sys.argv[1])
if sys.argv[2] == "send":
    for i in range(int(sys.argv[3])):
        client.chat(model="gpt-4o", messages=[{"role": "user", "content": f"question {i}"}])
    print("sent", flush=True)
    time.sleep(3600)  # delivering in the background until killed
else:
    client.budgets.alerts.resume()
    print("flushed" if client.budgets.alerts.flush(60) else "timed out", flush=True)
    client.close()
