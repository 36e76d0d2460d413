"""The embedded backend: one SQLite file (created 0600, WAL), for one process or for trying the bot out.

sqlite3 blocks, so every statement runs in this database's own worker threads, never on the event loop: one
thread for write transactions (BEGIN IMMEDIATE takes SQLite's write lock, so writers in other processes wait their
turn and fenced writes are serialized) and one for reads (WAL readers do not wait for the writer). Change
notifications reach listeners in this process at once; other processes see them when they poll.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Sequence, TypeVar

from . import migrations
from .base import Changes, Database, Row, RowCountMismatch, Statement

log = logging.getLogger(__name__)
T = TypeVar("T")


class _Lane:
    """One connection and the one thread that uses it."""

    def __init__(self, path: Path, name: str) -> None:
        self.path = path
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sqlite-{name}")
        self.conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            if self.conn is None:
                self.conn = self._connect()
            return fn(self.conn)

        return await asyncio.get_running_loop().run_in_executor(self.executor, run)

    async def close(self) -> None:
        def shut() -> None:
            if self.conn is not None:
                self.conn.close()
                self.conn = None

        await asyncio.get_running_loop().run_in_executor(self.executor, shut)
        self.executor.shutdown(wait=True)


class SqliteTx:
    dialect = "sqlite"
    for_update = ""

    def __init__(self, lane: _Lane, db: "SqliteDatabase") -> None:
        self._lane = lane
        self._db = db
        self.notify = False

    async def execute(self, sql: str, *params: Any) -> int:
        return await self._lane.call(lambda c: c.execute(sql, params).rowcount)

    async def fetchone(self, sql: str, *params: Any) -> Row | None:
        row = await self._lane.call(lambda c: c.execute(sql, params).fetchone())
        return dict(row) if row is not None else None

    async def fetchall(self, sql: str, *params: Any) -> list[Row]:
        rows = await self._lane.call(lambda c: c.execute(sql, params).fetchall())
        return [dict(r) for r in rows]

    async def serialize_events(self) -> None:
        """BEGIN IMMEDIATE already orders every writer."""

    def notify_on_commit(self) -> None:
        self.notify = True


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url_for_humans = f"sqlite:///{path}"
        self._writer = _Lane(path, "writer")
        self._reader = _Lane(path, "reader")
        self._write_lock = asyncio.Lock()
        self._changes = Changes()

    async def open(self) -> None:
        await asyncio.to_thread(self._create_file)
        async with self.transaction() as tx:
            applied = await migrations.apply(tx)
        if applied:
            log.info("database %s: applied schema migrations %s", self.url_for_humans, applied)

    def _create_file(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
        os.chmod(self.path, 0o600)

    async def close(self) -> None:
        async with self._write_lock:
            await self._writer.close()
        await self._reader.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTx]:
        async with self._write_lock:
            tx = SqliteTx(self._writer, self)
            try:
                # shielded: cancelled while BEGIN runs, the ROLLBACK below still runs after it (one thread, in order)
                await asyncio.shield(self._writer.call(lambda c: c.execute("BEGIN IMMEDIATE")))
                yield tx
            except BaseException:
                # shielded: a cancelled caller must still leave the connection outside any transaction
                await asyncio.shield(self._writer.call(lambda c: c.execute("ROLLBACK") if c.in_transaction else None))
                raise
            await asyncio.shield(self._writer.call(lambda c: c.execute("COMMIT")))
        if tx.notify:
            self._changes.bump()

    async def write_all(self, statements: Sequence[Statement]) -> list[int]:
        """The whole transaction in one call on the writer's thread: one hand-off instead of one per statement."""
        def run(conn: sqlite3.Connection) -> list[int]:
            conn.execute("BEGIN IMMEDIATE")
            try:
                counts = []
                for n, st in enumerate(statements):
                    counts.append(conn.execute(st.sql, st.params).rowcount)
                    if st.one_row and counts[-1] != 1:
                        raise RowCountMismatch(n)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return counts

        async with self._write_lock:
            # shielded: once on the thread it runs to its end, so a cancelled caller never leaves a transaction open
            return await asyncio.shield(self._writer.call(run))

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[SqliteTx]:
        yield SqliteTx(self._reader, self)

    @property
    def changes(self) -> int:
        return self._changes.count

    async def wait_for_change(self, after: int, timeout: float) -> bool:
        return await self._changes.wait(after, timeout)
