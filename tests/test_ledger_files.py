"""The ledger's files in trouble: a full temp directory, a corrupt or foreign database file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from unillm import Client, errors
from unillm.ledger import open_store
from unillm.testing import FakeProvider, Reply

from .servers import workload

ROOT = Path(__file__).resolve().parents[1]

# In a child process: temp files may not grow past 64 KiB (EFBIG, which SQLite reports
# as SQLITE_FULL, the same as a full disk), then summarize a ledger whose sort spills.
CHILD = textwrap.dedent("""
    import json, resource, signal, sys
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))
    from unillm.ledger import open_store
    store = open_store(sys.argv[1], create=False)
    rows = store.summary(by=["model", "tag:user"])
    print(json.dumps(rows, default=str))
""")


@pytest.fixture(scope="module")
def big_ledger(tmp_path_factory) -> str:
    """40k varied records: enough that a GROUP BY spills past SQLite's 2 MB sort memory."""
    url = f"sqlite:///{tmp_path_factory.mktemp('tempdir')}/ledger.db"
    store = open_store(url)
    recs = workload(4000)
    for i in range(10):
        store.record_many([r.replace(id=f"{i:04x}{r.id[4:]}") for r in recs])
    store.close()
    return url


def test_a_full_temp_directory_falls_back_to_sorting_in_memory(big_ledger, tmp_path) -> None:
    expected = json.loads(json.dumps(open_store(big_ledger, create=False).summary(
        by=["model", "tag:user"]), default=str))
    env = {**os.environ, "SQLITE_TMPDIR": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CHILD, big_ledger], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == expected
    assert list(tmp_path.iterdir()) == []  # temp files are deleted, not left behind


def _corrupt(path: Path) -> None:
    """Keep the header page, overwrite the rest: SQLite sees a malformed image."""
    data = path.read_bytes()
    path.write_bytes(data[:4096] + b"\xff" * (len(data) - 4096))


@pytest.mark.parametrize("damage", ["corrupt", "foreign"])
def test_a_damaged_ledger_file_is_one_error_naming_it(tmp_path, damage) -> None:
    path = tmp_path / "ledger.db"
    store = open_store(f"sqlite:///{path}")
    store.record_many(workload(50))
    store.close()
    for leftover in tmp_path.glob("ledger.db-*"):
        leftover.unlink()  # closed cleanly: the WAL is checkpointed, only the main file counts
    if damage == "corrupt":
        _corrupt(path)
    else:
        path.write_text("name,cost\nlunch,12\n" * 500)  # somebody's spreadsheet
    with pytest.raises(errors.LedgerError, match=f"cannot use the ledger database {path}: "):
        open_store(f"sqlite:///{path}", create=False)


def test_a_call_recorded_in_a_damaged_ledger_still_hands_back_its_answer(tmp_path) -> None:
    path = tmp_path / "ledger.db"
    path.write_text("not a database " * 500)
    with FakeProvider(Reply(text="paid for", usage={"input_tokens": 5, "output_tokens": 2})) as fake:
        client = Client(providers={"openai": {"base_url": fake.base_url("openai"), "api_key": "k"}},
                        ledger=f"sqlite:///{path}")
        with pytest.raises(errors.LedgerError, match=str(path)):
            client.chat(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        # the ledger is opened before the call is priced (its price overrides live there), so a
        # damaged one refuses the call before anything is sent: nothing paid, nothing unrecorded
        assert fake.requests == []
    assert path.read_text().startswith("not a database")  # never overwritten
