"""botbuilder `Storage` in SQLite: durable conversation and user state, with etag concurrency as the interface
defines it (None or "*" write unconditionally; "" is an error; any other etag must match). Blocking calls run
off the event loop. Documents are written by bot/state_codec.py (plain JSON; older jsonpickle rows still read)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
import uuid
from pathlib import Path
from typing import Any, Dict, List

from botbuilder.core import Storage, StoreItem

from . import state_codec

SCHEMA = "CREATE TABLE IF NOT EXISTS bot_state (key TEXT PRIMARY KEY, etag TEXT NOT NULL, doc TEXT NOT NULL)"


def _etag_of(item: Any) -> str | None:
    if isinstance(item, dict):
        return item.get("e_tag")
    return getattr(item, "e_tag", None)


class SqliteStorage(Storage):  # type: ignore[misc]
    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            os.chmod(self.path, 0o600)
            conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute(SCHEMA)
            self._conn = conn
        return self._conn

    async def _run(self, fn: Any, *args: Any) -> Any:
        def locked() -> Any:
            with self._lock:
                return fn(self._connect(), *args)

        return await asyncio.to_thread(locked)

    async def read(self, keys: List[str]) -> Dict[str, object]:
        if keys is None:
            raise TypeError("SqliteStorage.read(): keys are required")
        if not keys:
            return {}

        def fn(conn: sqlite3.Connection) -> Dict[str, object]:
            marks = ",".join("?" * len(keys))
            rows = conn.execute(f"SELECT key, etag, doc FROM bot_state WHERE key IN ({marks})", list(keys)).fetchall()
            out: Dict[str, object] = {}
            for key, etag, doc in rows:
                item = state_codec.loads(doc)
                if isinstance(item, dict):
                    item["e_tag"] = etag
                elif isinstance(item, StoreItem) or hasattr(item, "e_tag"):
                    item.e_tag = etag
                out[key] = item
            return out

        result: Dict[str, object] = await self._run(fn)
        return result

    async def write(self, changes: Dict[str, object]) -> None:
        if changes is None:
            raise TypeError("SqliteStorage.write(): changes are required")
        if not changes:
            return

        def fn(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                for key, item in changes.items():
                    etag = _etag_of(item)
                    if etag == "":
                        raise ValueError(f"SqliteStorage.write(): etag of '{key}' is empty")
                    doc = _encode(item)
                    new = str(uuid.uuid4())
                    if etag is None or etag == "*":
                        conn.execute("INSERT INTO bot_state (key, etag, doc) VALUES (?, ?, ?) "
                                     "ON CONFLICT(key) DO UPDATE SET etag = excluded.etag, doc = excluded.doc", (key, new, doc))
                    elif conn.execute("UPDATE bot_state SET etag = ?, doc = ? WHERE key = ? AND etag = ?", (new, doc, key, etag)).rowcount != 1:
                        raise KeyError(f"Etag conflict: '{key}' was changed by someone else (etag {etag} is stale)")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        await self._run(fn)

    async def delete(self, keys: List[str]) -> None:
        if keys is None:
            raise TypeError("SqliteStorage.delete(): keys are required")
        if keys:
            await self._run(lambda conn: conn.execute(f"DELETE FROM bot_state WHERE key IN ({','.join('?' * len(keys))})", list(keys)))

    async def ping(self) -> bool:
        return bool(await self._run(lambda conn: conn.execute("SELECT 1").fetchone()[0] == 1))

    async def close(self) -> None:
        def fn() -> None:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None

        await asyncio.to_thread(fn)


def _encode(item: Any) -> str:
    if isinstance(item, dict):
        item = {k: v for k, v in item.items() if k != "e_tag"}
    elif hasattr(item, "e_tag"):
        item = _without_etag(item)
    return state_codec.dumps(item)


def _without_etag(item: Any) -> Any:
    import copy

    clone = copy.copy(item)
    try:
        clone.e_tag = None
    except AttributeError:
        pass
    return clone
