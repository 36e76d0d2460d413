"""The durable journal: jobs, step states, timers, events, the audit log, leases and the secret vault,
in one SQLite file (STATE_DB, created 0600, WAL). Every call runs off the event loop.

Events are rows with an increasing `seq`, so a subscriber that keeps its own cursor loses nothing
across restarts. Leases make sure one worker at a time runs a job, across processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

T = TypeVar("T")

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, plan_hash TEXT NOT NULL, plan TEXT NOT NULL,
    requested_by TEXT NOT NULL, approved_by TEXT NOT NULL, tags TEXT NOT NULL, data TEXT NOT NULL,
    created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS steps (
    job_id TEXT NOT NULL, position INTEGER NOT NULL, name TEXT NOT NULL, status TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '', attempts INTEGER NOT NULL DEFAULT 0, verification TEXT NOT NULL DEFAULT '',
    outputs TEXT NOT NULL DEFAULT '{}', instructions TEXT, due_at REAL, PRIMARY KEY (job_id, name));
CREATE TABLE IF NOT EXISTS timers (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, kind TEXT NOT NULL, due_at REAL NOT NULL,
    fired_at REAL, UNIQUE (job_id, kind));
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, kind TEXT NOT NULL, step TEXT,
    message TEXT NOT NULL DEFAULT '', data TEXT NOT NULL DEFAULT '{}', at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT, at REAL NOT NULL, actor TEXT NOT NULL,
    action TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS leases (job_id TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS vault (
    job_id TEXT PRIMARY KEY, key_id TEXT NOT NULL, ciphertext BLOB NOT NULL, created_at REAL NOT NULL,
    expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, seq);
"""


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self.changed = asyncio.Condition()

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(self.path, 0o600)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.executescript(SCHEMA)
        self._conn = conn

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:  # waits for a transaction still running in another thread
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    async def ping(self) -> bool:
        return await self.tx(lambda c: c.execute("SELECT 1").fetchone()[0] == 1)

    async def tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` in one IMMEDIATE transaction, off the event loop."""
        result = await asyncio.to_thread(self._tx, fn)
        return result

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._lock:
            conn = self._conn
            if conn is None:
                raise RuntimeError("the journal is closed")
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

    async def notify(self) -> None:
        async with self.changed:
            self.changed.notify_all()

    # ---- helpers used inside transactions ----------------------------------------------------------------

    @staticmethod
    def event(c: sqlite3.Connection, job_id: str, kind: str, *, step: str | None = None, message: str = "",
              data: dict[str, Any] | None = None) -> int:
        cur = c.execute(
            "INSERT INTO events (job_id, kind, step, message, data, at) VALUES (?, ?, ?, ?, ?, ?)",
            (job_id, kind, step, message, json.dumps(data or {}), time.time()),
        )
        return int(cur.lastrowid or 0)

    @staticmethod
    def audit(c: sqlite3.Connection, job_id: str | None, actor: dict[str, Any], action: str, detail: dict[str, Any] | None = None) -> None:
        c.execute(
            "INSERT INTO audit (job_id, at, actor, action, detail) VALUES (?, ?, ?, ?, ?)",
            (job_id, time.time(), json.dumps(actor), action, json.dumps(detail or {})),
        )

    @staticmethod
    def job_row(c: sqlite3.Connection, job_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = c.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return row

    @staticmethod
    def step_rows(c: sqlite3.Connection, job_id: str) -> list[sqlite3.Row]:
        return list(c.execute("SELECT * FROM steps WHERE job_id = ? ORDER BY position", (job_id,)))

    @staticmethod
    def update_step(c: sqlite3.Connection, job_id: str, name: str, **fields: Any) -> None:
        if "outputs" in fields:
            fields["outputs"] = json.dumps(fields["outputs"])
        cols = ", ".join(f"{k} = ?" for k in fields)
        c.execute(f"UPDATE steps SET {cols} WHERE job_id = ? AND name = ?", (*fields.values(), job_id, name))

    @staticmethod
    def update_job(c: sqlite3.Connection, job_id: str, **fields: Any) -> None:
        if "data" in fields:
            fields["data"] = json.dumps(fields["data"])
        fields["updated_at"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in fields)
        c.execute(f"UPDATE jobs SET {cols} WHERE id = ?", (*fields.values(), job_id))

    # ---- leases ---------------------------------------------------------------------------------------------

    async def acquire_lease(self, job_id: str, owner: str, ttl: float) -> bool:
        def fn(c: sqlite3.Connection) -> bool:
            now = time.time()
            row = c.execute("SELECT owner, expires_at FROM leases WHERE job_id = ?", (job_id,)).fetchone()
            if row is not None and row["owner"] != owner and row["expires_at"] > now:
                return False
            c.execute("INSERT OR REPLACE INTO leases (job_id, owner, expires_at) VALUES (?, ?, ?)", (job_id, owner, now + ttl))
            return True

        return await self.tx(fn)

    async def release_lease(self, job_id: str, owner: str) -> None:
        await self.tx(lambda c: c.execute("DELETE FROM leases WHERE job_id = ? AND owner = ?", (job_id, owner)))

    # ---- events ---------------------------------------------------------------------------------------------

    async def events_after(self, seq: int, limit: int = 100) -> list[sqlite3.Row]:
        return await self.tx(lambda c: list(c.execute("SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit))))

    async def last_seq(self) -> int:
        return await self.tx(lambda c: int(c.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0]))
