"""unillm in one minute.

With an API key in the environment (OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY
or CO_API_KEY) this talks to the real vendor. Without one it starts unillm's
FakeProvider on 127.0.0.1 and says so: everything below runs offline.
"""

from __future__ import annotations

import os
import tempfile

from unillm import Client
from unillm.testing import FakeProvider, Reply

REAL = {"OPENAI_API_KEY": "gpt-4o-mini", "ANTHROPIC_API_KEY": "claude-haiku-4-5",
        "GEMINI_API_KEY": "gemini-2.5-flash", "CO_API_KEY": "command-r-08-2024"}


def demo(client: Client, models: list[str]) -> None:
    question = [{"role": "user", "content": "In one sentence: why is the sky blue?"}]
    for model in models:
        r = client.chat(model=model, messages=question, max_tokens=80, tags={"project": "quickstart"})
        print(f"\n{r.provider}/{r.model}: {r.content}")
        print(f"  tokens: {r.usage.prompt_tokens} in, {r.usage.completion_tokens} out ({r.usage.source})"
              f"   cost: ${r.cost.total_usd} (input ${r.cost.input_usd}, output ${r.cost.output_usd})")

    print(f"\nstreaming from {models[0]}: ", end="")
    with client.chat(model=models[0], messages=question, max_tokens=80, stream=True) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                print(chunk.choices[0].delta.content, end="", flush=True)
    print(f"\n  cost: ${stream.response.cost.total_usd}")

    print("\nthe ledger, by provider (every call above is a row):")
    for row in client.ledger.summary(by=["provider"]):
        calls = f"{row['calls']} call" + ("" if row["calls"] == 1 else "s")
        print(f"  {row['provider']:10} {calls:8} {row['input_tokens'] + row['output_tokens']:>5} tokens"
              f"  ${row['cost_usd']}")


def main() -> None:
    ledger = "sqlite:///" + os.path.join(tempfile.mkdtemp(prefix="unillm-quickstart-"), "ledger.db")
    models = [model for env, model in REAL.items() if os.environ.get(env)]
    if models:
        print("Using real vendors:", ", ".join(models))
        demo(Client(ledger=ledger), models)
        return
    print("No API keys found: using unillm's FakeProvider on 127.0.0.1 (offline, canned answers).")
    answer = "Sunlight scatters off air molecules, and blue light scatters the most."
    with FakeProvider(Reply(text=answer)) as fake:
        demo(Client(providers=fake.providers(), ledger=ledger),
             ["gpt-4o-mini", "claude-haiku-4-5", "gemini-2.5-flash", "command-r-08-2024"])


if __name__ == "__main__":
    main()
