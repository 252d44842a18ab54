"""The WAL checkpoint runs on the store's thread, never inside the commit of a call's row."""

from __future__ import annotations

import threading

from tests.conftest import rec
from unillm.ledger import checkpoint
from unillm.ledger.sqlite import SQLiteStore


def test_no_commit_of_a_row_runs_the_checkpoint(tmp_path):
    store = SQLiteStore(tmp_path / "ledger.db")
    try:
        assert store._conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    finally:
        store.close()


def test_the_store_thread_copies_the_wal_back(tmp_path, monkeypatch):
    monkeypatch.setattr(checkpoint, "EVERY", 5)
    ran = threading.Event()
    real = checkpoint.Checkpointer._run

    def run(self):
        ran.set()
        real(self)
    monkeypatch.setattr(checkpoint.Checkpointer, "_run", run)
    path = tmp_path / "ledger.db"
    store = SQLiteStore(path)
    try:
        for _ in range(5):
            store.record(rec())
        assert ran.wait(30)
        cp = store._checkpoints
        assert cp is not None
        for _ in range(300):  # the thread's first checkpoint, however slow the machine
            if cp.done:
                break
            threading.Event().wait(0.1)
        assert cp.done >= 1
        busy, frames, copied = cp.last or (1, 0, 0)
        assert busy == 0 and frames > 0 and copied == frames  # every frame back in the file
        assert len(list(store.records())) == 5
    finally:
        store.close()
    assert cp._thread is not None and not cp._thread.is_alive()


def test_rows_survive_a_store_closed_with_the_wal_not_copied(tmp_path):
    path = tmp_path / "ledger.db"
    store = SQLiteStore(path)
    for _ in range(3):
        store.record(rec())
    store.close()
    again = SQLiteStore(path)
    try:
        assert len(list(again.records())) == 3
    finally:
        again.close()
