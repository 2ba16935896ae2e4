"""The spool's memory: one row per file taken in, in intake order, in a local SQLite file.

Why a database rather than file names: a crash or a reboot between "moved into the spool"
and "answered by the server" must resume exactly where it stopped, with the attempt count,
the next try time and the rows already settled (so they are not sent again).
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Iterable, Optional

SCHEMA = """CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, spool TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL, size INTEGER NOT NULL, state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0, next_try REAL NOT NULL DEFAULT 0, last_error TEXT,
    result TEXT, added_at REAL NOT NULL, done_at REAL, settled TEXT)"""


class Journal:
    """One row per spooled file: state, attempts, next try, and the rows already settled."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(str(path), timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL").execute(SCHEMA)
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(files)")}
        if "settled" not in columns:  # a journal written by version 1.0
            self.db.execute("ALTER TABLE files ADD COLUMN settled TEXT")

    def add(self, name: str, spool: Path, digest: str, size: int) -> None:
        """Record a file moved into the spool (ignored when already known)."""
        self.db.execute("INSERT OR IGNORE INTO files (name, spool, sha256, size, added_at)"
                        " VALUES (?, ?, ?, ?, ?)", (name, spool.name, digest, size, time.time()))

    def known(self) -> set:
        """Return the spool names the journal knows."""
        return {row[0] for row in self.db.execute("SELECT spool FROM files")}

    def pending(self) -> list:
        """Return pending rows (id, name, spool, attempts, next_try) in intake order."""
        return list(self.db.execute("SELECT id, name, spool, attempts, next_try FROM files"
                                    " WHERE state = 'pending' ORDER BY id"))

    def pending_errors(self) -> list:
        """Return (name, last_error) of every pending file, for the report at exit."""
        return list(self.db.execute("SELECT name, last_error FROM files"
                                    " WHERE state = 'pending' ORDER BY id"))

    def settled(self, row_id: int) -> set:
        """Return the CSV rows of a file already stored, duplicate or unreadable for good."""
        raw = self.db.execute("SELECT settled FROM files WHERE id = ?", (row_id,)).fetchone()
        return set(json.loads(raw[0])) if raw and raw[0] else set()

    def settle(self, row_id: int, rows: Iterable[int]) -> None:
        """Remember rows that must never be sent again (written before the next attempt)."""
        self.db.execute("UPDATE files SET settled = ? WHERE id = ?",
                        (json.dumps(sorted(set(rows))), row_id))

    def retry(self, row_id: int, attempts: int, next_try: float, error: str) -> None:
        """Remember a failed attempt and when to try again."""
        self.db.execute("UPDATE files SET attempts = ?, next_try = ?, last_error = ? WHERE id = ?",
                        (attempts, next_try, error[:1000], row_id))

    def finish(self, row_id: int, state: str, result: str, error: Optional[str] = None) -> None:
        """Mark a file sent (or refused for good)."""
        self.db.execute("UPDATE files SET state = ?, result = ?, last_error = ?, done_at = ?,"
                        " attempts = attempts + 1 WHERE id = ?",
                        (state, result[:20000], error, time.time(), row_id))
