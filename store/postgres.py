"""The shared backend: PostgreSQL (Azure Database for PostgreSQL in production), for several bot instances at once.

psycopg 3's async driver with its connection pool; nothing blocks the event loop. Migrations run under a session
advisory lock, so instances starting together apply them once. Transactions that append events take a transaction
advisory lock first, so events become visible in `seq` order (a reader following the sequence never skips one that
commits late). Committed changes are announced with NOTIFY; every instance LISTENs and wakes its worker and notifier
at once, with polling as the fallback when the listening connection is down.

TLS: the URL's `sslmode` is passed to libpq as given; when the URL names a host that is not loopback and sets no
`sslmode`, `require` is used (Azure Database for PostgreSQL refuses unencrypted connections; prefer `verify-full`
with `sslrootcert`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from typing import Any, AsyncIterator, Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool

from . import migrations
from .base import EVENTS_CHANNEL, Changes, Database, Row, RowCountMismatch, Statement, StoreError

log = logging.getLogger(__name__)
MIGRATION_LOCK = 7_281_001  # advisory lock keys of this application
EVENTS_LOCK = 7_281_002


def _loopback(host: str) -> bool:
    if host in ("", "localhost") or host.startswith("/"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def conninfo(url: str) -> str:
    """The libpq connection string for a postgresql:// URL, with sslmode=require added for remote hosts."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    if "sslmode" not in query and not _loopback(parts.hostname or ""):
        query["sslmode"] = "require"
    return urlunsplit(("postgresql", parts.netloc, parts.path, urlencode(query), ""))


def redacted(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    if parts.username:
        netloc = f"{parts.username}:***@{netloc}" if parts.password else f"{parts.username}@{netloc}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _sql(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


class PostgresTx:
    dialect = "postgresql"
    for_update = " FOR UPDATE"

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self._conn = conn
        self.notify = False

    async def execute(self, sql: str, *params: Any) -> int:
        cursor = await self._conn.execute(_sql(sql), params)
        return cursor.rowcount

    async def fetchone(self, sql: str, *params: Any) -> Row | None:
        cursor = await self._conn.execute(_sql(sql), params)
        return await cursor.fetchone()

    async def fetchall(self, sql: str, *params: Any) -> list[Row]:
        cursor = await self._conn.execute(_sql(sql), params)
        return await cursor.fetchall()

    async def serialize_events(self) -> None:
        await self._conn.execute("SELECT pg_advisory_xact_lock(%s)", (EVENTS_LOCK,))

    def notify_on_commit(self) -> None:
        self.notify = True


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 10) -> None:
        self._conninfo = conninfo(url)
        self.url_for_humans = redacted(url)
        self._pool = AsyncConnectionPool(self._conninfo, min_size=min_size, max_size=max_size, open=False,
                                         kwargs={"row_factory": dict_row, "autocommit": True}, name="copilot-setup")
        self._changes = Changes()
        self._listener: asyncio.Task[None] | None = None
        self._listening = asyncio.Event()

    async def open(self) -> None:
        try:
            await self._pool.open(wait=True, timeout=30)
        except psycopg.Error as exc:
            raise StoreError(f"could not connect to {self.url_for_humans}: {type(exc).__name__}: {exc}") from None
        async with self._pool.connection() as conn:
            await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                async with conn.transaction():
                    applied = await migrations.apply(PostgresTx(conn))
            finally:
                await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        if applied:
            log.info("database %s: applied schema migrations %s", self.url_for_humans, applied)
        self._listener = asyncio.create_task(self._listen(), name="postgres-listen")
        with contextlib.suppress(asyncio.TimeoutError):  # changes from now on wake this instance (else it polls)
            await asyncio.wait_for(self._listening.wait(), 10)

    async def close(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        await self._pool.close()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTx]:
        async with self._pool.connection() as conn:
            async with conn.transaction():
                tx = PostgresTx(conn)
                yield tx
                if tx.notify:
                    await conn.execute("SELECT pg_notify(%s, '')", (EVENTS_CHANNEL,))  # delivered at commit
        if tx.notify:
            self._changes.bump()

    async def write_all(self, statements: Sequence[Statement]) -> list[int]:
        """One statement is sent alone (in autocommit it is its own transaction); several go as BEGIN, the statements
        and COMMIT in one round trip (psycopg's pipeline mode), their row counts checked before the COMMIT is sent, so
        a mismatch still rolls everything back. (Measured on loopback with TLS: the pipeline costs about four times
        the client CPU and three times the server CPU of a lone statement, so the bot's usual one-document state
        write is not sent that way.)"""
        if len(statements) == 1:
            only = statements[0]
            async with self._pool.connection() as conn:
                cursor = await conn.execute(_sql(only.sql), only.params)
            if only.one_row and cursor.rowcount != 1:
                raise RowCountMismatch(0)
            return [cursor.rowcount]
        async with self._pool.connection() as conn:
            async with conn.pipeline() as pipeline:
                async with conn.transaction():
                    cursors = [await conn.execute(_sql(st.sql), st.params) for st in statements]
                    await pipeline.sync()
                    counts = [c.rowcount for c in cursors]
                    for n, (st, count) in enumerate(zip(statements, counts, strict=True)):
                        if st.one_row and count != 1:
                            raise RowCountMismatch(n)
        return counts

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[PostgresTx]:
        async with self._pool.connection() as conn:
            yield PostgresTx(conn)

    @property
    def changes(self) -> int:
        return self._changes.count

    async def wait_for_change(self, after: int, timeout: float) -> bool:
        return await self._changes.wait(after, timeout)

    @property
    def announces_changes(self) -> bool:
        return self._listening.is_set()

    async def _listen(self) -> None:
        """LISTEN on a connection of its own; reconnect after a failure (callers poll meanwhile)."""
        delay = 1.0
        while True:
            try:
                conn = await self._connect_listener()
                async with conn:
                    await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                    self._listening.set()
                    self._changes.bump()  # what was committed while no one listened is looked at now
                    delay = 1.0
                    async for _ in conn.notifies():
                        self._changes.bump()
            except asyncio.CancelledError:
                raise
            except psycopg.Error as exc:
                log.warning("the PostgreSQL notification listener lost its connection (%s); reconnecting in %.0f s",
                            type(exc).__name__, delay)
            self._listening.clear()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _connect_listener(self) -> psycopg.AsyncConnection[Any]:
        """Connect, finishing the handshake even if cancelled meanwhile: a connection abandoned mid-authentication
        keeps a server process waiting (authentication_timeout, a minute), which holds up DROP DATABASE."""
        connecting = asyncio.ensure_future(psycopg.AsyncConnection.connect(self._conninfo, autocommit=True))
        try:
            return await asyncio.shield(connecting)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                conn = await asyncio.wait_for(connecting, 10)
                await conn.close()
            raise
