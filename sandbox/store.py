"""Durable state of the emulated cloud: JSON documents in SQLite, kept in memory for reads.

Every mutation is written through to SQLite off the event loop, so a restarted sandbox still has
what was created. Only salted hashes of secrets are ever stored.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

Doc = dict[str, Any]


class Store:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._data: dict[str, dict[str, Doc]] = {}

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE IF NOT EXISTS objects (kind TEXT, id TEXT, doc TEXT NOT NULL, PRIMARY KEY (kind, id))")
        for kind, oid, doc in conn.execute("SELECT kind, id, doc FROM objects"):
            self._data.setdefault(kind, {})[oid] = json.loads(doc)
        self._conn = conn

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        with self._lock:  # waits for a write still running in another thread
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    def get(self, kind: str, oid: str) -> Doc | None:
        return self._data.get(kind, {}).get(oid)

    def all(self, kind: str) -> list[Doc]:
        return list(self._data.get(kind, {}).values())

    async def put(self, kind: str, oid: str, doc: Doc) -> None:
        self._data.setdefault(kind, {})[oid] = doc
        text = json.dumps(doc)
        await asyncio.to_thread(self._write, "INSERT OR REPLACE INTO objects (kind, id, doc) VALUES (?, ?, ?)", (kind, oid, text))

    async def delete(self, kind: str, oid: str) -> None:
        self._data.get(kind, {}).pop(oid, None)
        await asyncio.to_thread(self._write, "DELETE FROM objects WHERE kind = ? AND id = ?", (kind, oid))

    def _write(self, sql: str, params: tuple[str, ...]) -> None:
        with self._lock:
            if self._conn is None:
                raise RuntimeError("the sandbox store is closed")
            self._conn.execute(sql, params)
