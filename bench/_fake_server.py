"""FakeProvider in its own process, so its server thread never competes for the bench's GIL
(a real vendor is never in your process). Prints its URL, serves until stdin closes."""

from __future__ import annotations

import sys

from unillm.testing import FakeProvider, Reply

with FakeProvider(Reply(text="Hello there, how are you?", usage={"input_tokens": 12, "output_tokens": 7})) as fake:
    print(fake.url, flush=True)
    sys.stdin.read()
