"""SQLite store of latency measurements, safe for several processes writing at once."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from carve.files import cache_dir

T = TypeVar("T")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    key TEXT PRIMARY KEY,
    model_key TEXT NOT NULL,
    shape TEXT NOT NULL,
    runtime TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    result TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS measurements_model ON measurements(model_key);
"""


def default_db_path() -> Path:
    return cache_dir() / "latency.db"


class LatencyCache:
    """Measurements keyed by model, input shape, runtime and device fingerprint (versions included).

    WAL journaling, a busy timeout and retried transactions let concurrent processes write
    without losing rows; each process opens its own connection.
    """

    def __init__(self, path: str | Path | None = None, timeout_s: float = 30.0):
        self.path = Path(path) if path is not None else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout_s = timeout_s
        self._conn: sqlite3.Connection | None = None
        self._pid = -1
        self._retry(lambda c: c.executescript(_SCHEMA))

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None or self._pid != os.getpid():  # never share a connection across fork
            conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout={int(self.timeout_s * 1000)}")
            self._retry_raw(lambda: conn.execute("PRAGMA journal_mode=WAL"))
            conn.execute("PRAGMA synchronous=NORMAL")
            self._conn, self._pid = conn, os.getpid()
        return self._conn

    def _retry_raw(self, fn: Callable[[], T]) -> T:
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                return fn()
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.005, 0.05))

    def _retry(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return self._retry_raw(lambda: fn(self._connection()))

    def get(self, key: str) -> dict[str, Any] | None:
        """The stored result for ``key``, or None."""
        row = self._retry(lambda c: c.execute("SELECT result FROM measurements WHERE key=?", (key,)).fetchone())
        return json.loads(row[0]) if row else None

    def put(self, key: str, model_key: str, shape: str, runtime: str, fingerprint: str,
            result: dict[str, Any]) -> None:
        """Store (or replace) the result for ``key`` in one immediate transaction."""
        text = json.dumps(result, sort_keys=True)

        def write(c: sqlite3.Connection) -> None:
            c.execute("BEGIN IMMEDIATE")
            try:
                c.execute("INSERT OR REPLACE INTO measurements VALUES (?,?,?,?,?,?,?)",
                          (key, model_key, shape, runtime, fingerprint, text, time.time()))
                c.execute("COMMIT")
            except BaseException:
                c.execute("ROLLBACK")
                raise

        self._retry(write)

    def __len__(self) -> int:
        return int(self._retry(lambda c: c.execute("SELECT COUNT(*) FROM measurements").fetchone()[0]))

    def integrity_ok(self) -> bool:
        """True when SQLite's integrity check passes."""
        return self._retry(lambda c: c.execute("PRAGMA integrity_check").fetchone()[0]) == "ok"

    def close(self) -> None:
        if self._conn is not None and self._pid == os.getpid():
            self._conn.close()
        self._conn = None
