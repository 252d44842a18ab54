"""A full disk under the ledger: one precise error, nothing already recorded is lost.

Real, not simulated: a subprocess caps its file size with RLIMIT_FSIZE (SIGXFSZ ignored,
so writes past it fail with EFBIG, as on a full disk) after a first batch of calls.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from unillm import Client
from unillm.testing import FakeProvider

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="RLIMIT_FSIZE is POSIX")

SCRIPT = textwrap.dedent("""
    import json, resource, signal, sys
    from unillm import Client, errors
    url, ledger = sys.argv[1], sys.argv[2]
    client = Client(providers={"openai": {"base_url": url, "api_key": "k"}}, ledger=ledger, cache="off")
    hi = [{"role": "user", "content": "hi"}]
    ids = [client.chat(model="gpt-4o-mini", messages=hi, max_tokens=5).ledger_id for _ in range(20)]
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (1, resource.RLIM_INFINITY))   # the disk is now full
    failures = []
    for _ in range(3):
        try:
            client.chat(model="gpt-4o-mini", messages=hi, max_tokens=5)
        except errors.LedgerError as exc:
            assert exc.response is not None and exc.response.content  # the paid-for answer survives
            failures.append(str(exc))
    print(json.dumps({"ids": ids, "failures": failures}))
""")


def test_full_disk_is_one_clear_error_and_loses_no_acknowledged_record(fake: FakeProvider,
                                                                       tmp_path: Path) -> None:
    ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
    out = subprocess.run([sys.executable, "-c", SCRIPT, fake.base_url("openai"), ledger],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert len(result["failures"]) == 3
    db = str(tmp_path / "ledger.db")
    assert all(f.startswith("could not record the call in the ledger sqlite:///") and f"{db}: " in f
               and "disk" in f for f in result["failures"]), result["failures"]
    recorded = {r.id for r in Client(ledger=ledger).ledger.records()}
    assert set(result["ids"]) <= recorded                 # every acknowledged call is still there
