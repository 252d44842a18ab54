"""FakeProvider in its own process, so its server thread never competes for the bench's GIL
(a real vendor is never in your process). Prints its URL, serves until stdin closes.
An optional argument is the seconds each reply waits before it starts (a vendor's latency)."""

from __future__ import annotations

import sys

from unillm.testing import FakeProvider, Reply

DELAY = float(sys.argv[1]) if len(sys.argv) > 1 else 0.0

with FakeProvider(Reply(text="Hello there, how are you?", usage={"input_tokens": 12, "output_tokens": 7},
                        delay=DELAY)) as fake:
    print(fake.url, flush=True)
    sys.stdin.read()
