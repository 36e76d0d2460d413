"""The hand-off vault's rows (ciphertext only: provisioning/vault.py encrypts) and the durable queue of credentials
to remove from app registrations, retried until Graph confirms each is gone."""

from __future__ import annotations

import time

from .base import Database, Row


class VaultRows:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, job_id: str) -> Row | None:
        """The row with its ciphertext, if the secret still waits."""
        async with self.db.read() as tx:
            return await tx.fetchone("SELECT job_id, key_id, ciphertext, created_at, expires_at, shown_at FROM vault WHERE job_id = ?", job_id)

    async def mark_shown(self, job_id: str, key_id: str) -> bool:
        """Record the first time the secret was shown; False if it is gone (or another secret took its place)."""
        async with self.db.transaction() as tx:
            changed = await tx.execute("UPDATE vault SET shown_at = COALESCE(shown_at, ?) WHERE job_id = ? AND key_id = ?",
                                       time.time(), job_id, key_id)
        return changed == 1

    async def expired(self, now: float) -> list[Row]:
        async with self.db.read() as tx:
            return await tx.fetchall("SELECT job_id, key_id, expires_at FROM vault WHERE expires_at <= ?", now)


class Removals:
    """Credentials (a password's keyId, a federated credential's id, an application) to remove from Entra."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def due(self, now: float, limit: int = 50) -> list[Row]:
        async with self.db.read() as tx:
            return await tx.fetchall("SELECT * FROM credential_removals WHERE done_at IS NULL AND next_attempt_at <= ? "
                                     "ORDER BY next_attempt_at LIMIT ?", now, limit)

    async def for_job(self, job_id: str) -> list[Row]:
        async with self.db.read() as tx:
            return await tx.fetchall("SELECT * FROM credential_removals WHERE job_id = ? ORDER BY id", job_id)

    async def pending(self) -> int:
        async with self.db.read() as tx:
            row = await tx.fetchone("SELECT COUNT(*) AS n FROM credential_removals WHERE done_at IS NULL")
        return int(row["n"]) if row else 0

    async def done(self, removal_id: int) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("UPDATE credential_removals SET done_at = ?, last_error = '' WHERE id = ? AND done_at IS NULL",
                             time.time(), removal_id)

    async def failed(self, removal_id: int, error: str, retry_in: float) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("UPDATE credential_removals SET attempts = attempts + 1, last_error = ?, next_attempt_at = ? WHERE id = ?",
                             error[:500], time.time() + retry_in, removal_id)
