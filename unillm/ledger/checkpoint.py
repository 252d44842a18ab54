"""The SQLite ledger's WAL checkpoint, on a thread of its own.

By default SQLite copies the WAL back into the database file inside the COMMIT that takes
the WAL past 1000 pages: every ~200th ledger row paid for that copy (1000 pages, the WAL and
the file fsynced: milliseconds) before its call could return. A commit is durable once its
frames are in the WAL (see `unillm.ledger.sqlite`); the copy need not be the caller's. So
the store's connection turns auto-checkpoint off and tells a `Checkpointer` of each commit;
every `EVERY` of them it wakes its thread, which runs ``PRAGMA wal_checkpoint(PASSIVE)`` on
its own connection (PASSIVE waits for no reader or writer and blocks none). Nothing
committed waits for it, and nothing is lost if the process dies before it runs: the next
connection to open the file finds the WAL and reads through it, as SQLite always does.
"""

from __future__ import annotations

import logging
import sqlite3
import threading

log = logging.getLogger("unillm.ledger")

#: commits between checkpoints (~1000 WAL pages of ledger rows: SQLite's own threshold)
EVERY = 200


class Checkpointer:
    """Checkpoints ``path``'s WAL every `EVERY` commits it is told of, on a daemon thread
    started at the first (a store that writes little never starts one)."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path, self.timeout = path, timeout
        self._commits = 0
        self._wake = threading.Event()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self.done = 0  #: checkpoints run (for tests and diagnostics)
        #: the last one's (busy, frames in the WAL, frames copied back), as SQLite reports it
        self.last: tuple[int, int, int] | None = None

    def committed(self, commits: int = 1) -> None:
        """Count ``commits`` (called under the store's lock, after each COMMIT)."""
        self._commits += commits
        if self._commits < EVERY or self._stopped:
            return
        self._commits = 0
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="unillm-ledger-checkpoint", daemon=True)
            self._thread.start()
        self._wake.set()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopped:
                    return
                try:
                    if conn is None:
                        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None,
                                               check_same_thread=False)
                    self.last = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.done += 1
                except sqlite3.Error as exc:  # the next wake tries again; until then the WAL grows
                    log.warning("unillm ledger %s: WAL checkpoint failed: %s", self.path, exc)
        finally:
            if conn is not None:
                conn.close()

    def close(self) -> None:
        """Stop the thread (a checkpoint under way finishes first)."""
        self._stopped = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
