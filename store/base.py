"""The storage seam: what every backend offers, and the errors it raises.

Domain code (store/jobs.py, store/kv.py, …) is written once against `Tx`, a transaction that runs SQL with `?`
placeholders; each backend (store/sqlite.py, store/postgres.py) supplies transactions, change notifications and its
schema migrations. Nothing outside this package writes SQL.

    StoreError
    ├── LeaseLost         a fenced write by a holder whose lease was taken over (or released)
    ├── JobStateChanged   a write whose precondition on the job (status, version) no longer holds
    ├── EtagConflict      a conditional key-value write lost a race (botbuilder expects KeyError: it is one)
    └── MigrationError    the database's schema is newer than this code, or a migration failed
"""

from __future__ import annotations

import abc
import asyncio
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

Row = dict[str, Any]
EVENTS_CHANNEL = "copilot_setup_events"  # a job changed or an event was appended


IDLE_POLL = 5.0  # seconds: the fallback poll of an idle poller while every change is announced (announces_changes)

class StoreError(Exception):
    pass


class LeaseLost(StoreError):
    def __init__(self, name: str, owner: str, generation: int) -> None:
        super().__init__(f"the lease {name} is no longer held by {owner} (generation {generation})")
        self.name, self.owner, self.generation = name, owner, generation


class JobStateChanged(StoreError):
    def __init__(self, job_id: str, reason: str, *, status: str | None = None) -> None:
        super().__init__(f"job {job_id}: {reason}")
        self.job_id, self.reason, self.status = job_id, reason, status


class EtagConflict(StoreError, KeyError):
    """A conditional write whose etag is stale. Also a KeyError, which is what botbuilder's storage contract raises."""


class MigrationError(StoreError):
    pass


class Changes:
    """A counter of committed changes that tasks can wait on."""

    def __init__(self) -> None:
        self.count = 0
        self._condition: asyncio.Condition | None = None

    def bump(self) -> None:
        self.count += 1
        if self._condition is not None:
            condition = self._condition

            async def wake() -> None:
                async with condition:
                    condition.notify_all()

            asyncio.ensure_future(wake())

    async def wait(self, after: int, timeout: float) -> bool:
        if self.count > after:
            return True
        if self._condition is None:
            self._condition = asyncio.Condition()
        try:
            async with self._condition:
                await asyncio.wait_for(self._condition.wait_for(lambda: self.count > after), timeout)
            return True
        except asyncio.TimeoutError:
            return False


@dataclass(frozen=True)
class Statement:
    sql: str
    params: tuple[Any, ...] = ()
    one_row: bool = False  # it must change exactly one row, or the transaction is rolled back


class RowCountMismatch(StoreError):
    """A statement of `Database.write_all` marked `one_row` changed another number of rows (its index: `.index`)."""

    def __init__(self, index: int) -> None:
        super().__init__(f"statement {index} did not change exactly one row")
        self.index = index


class Tx(Protocol):
    """One transaction (or, from `Database.read()`, one connection in autocommit) on the backend."""

    dialect: str  # "sqlite" or "postgresql"

    @property
    def for_update(self) -> str:
        """" FOR UPDATE" where the backend locks rows that way (PostgreSQL); "" where a write transaction already
        holds the database's write lock (SQLite's BEGIN IMMEDIATE)."""

    async def execute(self, sql: str, *params: Any) -> int:
        """Run one statement; the number of rows it changed."""

    async def fetchone(self, sql: str, *params: Any) -> Row | None: ...

    async def fetchall(self, sql: str, *params: Any) -> list[Row]: ...

    async def serialize_events(self) -> None:
        """Order this transaction's event inserts after every other's, so a reader following `seq` misses none."""

    def notify_on_commit(self) -> None:
        """Wake listeners of EVENTS_CHANNEL (in every process) once this transaction commits."""


class Database(abc.ABC):
    """A backend: opened once per process, shared by the journal, the vault, leases and the bot's state."""

    dialect: str
    url_for_humans: str  # where it is, without any password

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect and apply pending migrations (one process at a time)."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A write transaction: committed when the block ends, rolled back if it raises (or is cancelled)."""

    @abc.abstractmethod
    def read(self) -> AbstractAsyncContextManager[Tx]:
        """A connection for reads that need no transaction."""

    @property
    @abc.abstractmethod
    def changes(self) -> int:
        """How many committed changes this process has heard of (a counter to pass to `wait_for_change`)."""

    @abc.abstractmethod
    async def wait_for_change(self, after: int, timeout: float) -> bool:
        """Wait until `changes` exceeds `after` (a transaction that called `notify_on_commit` committed, here or, where
        the backend can tell, in another process), at most `timeout` seconds; True if one did. Read `changes` before
        reading what you wait on, so no change between the read and the wait is missed. Backends without cross-process
        notification return at the timeout, and callers poll."""

    @property
    def announces_changes(self) -> bool:
        """True while every change that any process commits (with `notify_on_commit`) wakes `wait_for_change` here:
        PostgreSQL while its LISTEN connection is up. Pollers may then poll rarely (at most every IDLE_POLL seconds);
        otherwise (SQLite, whose command line runs in another process, or a listener reconnecting) they must poll at
        their usual pace."""
        return False

    async def write_all(self, statements: Sequence[Statement]) -> list[int]:
        """Run `statements` in one write transaction, all or nothing: their row counts. A statement marked
        `one_row` that changes any other number of rows rolls the whole transaction back (RowCountMismatch). For
        writes known in full beforehand (the bot's state), so a backend can send them at once."""
        async with self.transaction() as tx:
            counts = []
            for n, st in enumerate(statements):
                counts.append(await tx.execute(st.sql, *st.params))
                if st.one_row and counts[-1] != 1:
                    raise RowCountMismatch(n)
        return counts

    async def ping(self) -> bool:
        async with self.read() as tx:
            row = await tx.fetchone("SELECT 1 AS ok")
        return bool(row and row["ok"] == 1)
