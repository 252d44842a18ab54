"""The first call to a vendor: its SDK import is not the request's latency, and a missing
SDK names the extra that installs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from unillm import Client, errors

ROOT = Path(__file__).resolve().parent.parent
HI = [{"role": "user", "content": "hi"}]

# the SDK's import is made to "take" 1000 s on a shifted perf_counter: a latency that counted
# it would read over a million milliseconds
PROBE = """
import sys, time
real, shift = time.perf_counter, [0.0]
time.perf_counter = lambda: real() + shift[0]
class SlowImport:
    def find_spec(self, name, path=None, target=None):
        if name == sys.argv[1]:
            shift[0] += 1000.0
        return None
sys.meta_path.insert(0, SlowImport())
from unillm import Client
from unillm.testing import FakeProvider
assert sys.argv[1] not in sys.modules, "the SDK was imported before the first call"
with FakeProvider() as fake:
    client = Client(providers=fake.providers(), ledger="sqlite:///" + sys.argv[3])
    client.chat(model=sys.argv[2], messages=[{"role": "user", "content": "hi"}])
    print(next(iter(client.ledger.records())).latency_ms)
"""


@pytest.mark.parametrize("sdk, model", [("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5"),
                                        ("google.genai", "gemini-2.5-flash"), ("cohere", "command-r")])
def test_the_first_calls_latency_does_not_include_the_sdk_import(sdk: str, model: str, tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-c", PROBE, sdk, model, str(tmp_path / "l.db")],
                         env={"PYTHONPATH": str(ROOT), "UNILLM_HOME": str(tmp_path)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert float(out.stdout.strip()) < 1_000_000 / 2


@pytest.mark.parametrize("module, model, extra", [
    ("openai", "gpt-4o-mini", "openai"), ("anthropic", "claude-haiku-4-5", "anthropic"),
    ("google.genai", "gemini-2.5-flash", "google"), ("cohere", "command-r", "cohere")])
def test_a_missing_sdk_names_its_extra(monkeypatch, fake, module: str, model: str, extra: str) -> None:
    for name in list(sys.modules):
        if name == module or name.startswith(module + "."):
            monkeypatch.setitem(sys.modules, name, None)   # as if not installed
    monkeypatch.setitem(sys.modules, module, None)
    client = Client(providers=fake.providers(), ledger="off")
    with pytest.raises(errors.MissingDependencyError) as info:
        client.chat(model=model, messages=HI)
    assert f"pip install 'unillm[{extra}]'" in str(info.value)


def test_google_types_module_is_the_google_extra(monkeypatch) -> None:
    from unillm.adapters.base import require
    monkeypatch.setitem(sys.modules, "google.genai.types", None)
    with pytest.raises(errors.MissingDependencyError, match=r"unillm\[google\]"):
        require("google.genai.types")
