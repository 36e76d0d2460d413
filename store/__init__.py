"""The one storage seam: SQLite (embedded, one process) or PostgreSQL (several instances), chosen by URL.

    db = open_database("postgresql://user:pw@host/db?sslmode=verify-full")   # or a path, or sqlite:///path
    await db.open()                                 # connects and applies pending migrations
    store = Store(db)                               # store.jobs, store.locks, store.vault, store.removals, store.kv

Everything durable goes through here: jobs, steps, timers, events, audit, leases, the hand-off vault, credential
removals, the bot's conversation and user state and its records of jobs in Teams. Nothing else writes SQL.
"""

from __future__ import annotations

from pathlib import Path

from .base import IDLE_POLL, Database, EtagConflict, JobStateChanged, LeaseLost, MigrationError, Row, StoreError
from .jobs import JobChange, Jobs, JobSnapshot, NewAudit, NewEvent, NewJob, NewRemoval, Sealed
from .kv import KeyValue
from .locks import Fence, Locks
from .setups import Setups
from .vault import Removals, VaultRows


def open_database(url: str) -> Database:
    """`postgresql://…` (or `postgres://…`) for PostgreSQL; `sqlite:///path` or a plain path for SQLite."""
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresDatabase  # psycopg loads only when PostgreSQL is used

        return PostgresDatabase(url)
    if url.startswith("sqlite:///"):
        return _sqlite(Path(url.removeprefix("sqlite:///")))
    if "://" in url:
        raise StoreError(f"unsupported database URL scheme in {url.split('://', 1)[0]}://…; use postgresql:// or sqlite:///")
    return _sqlite(Path(url))


def _sqlite(path: Path) -> Database:
    from .sqlite import SqliteDatabase

    return SqliteDatabase(path)


class Store:
    """The domain operations over one database."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.jobs = Jobs(db)
        self.locks = Locks(db)
        self.vault = VaultRows(db)
        self.removals = Removals(db)
        self.kv = KeyValue(db)
        self.setups = Setups(db)


__all__ = [
    "open_database", "Store", "Database", "Row", "StoreError", "LeaseLost", "JobStateChanged", "EtagConflict", "MigrationError",
    "Fence", "Locks", "Jobs", "JobChange", "JobSnapshot", "NewJob", "NewEvent", "NewAudit", "NewRemoval", "Sealed",
    "KeyValue", "VaultRows", "Removals", "Setups", "IDLE_POLL",
]
