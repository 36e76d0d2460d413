"""The one-time secret hand-off: the client secret's text, encrypted (Fernet), until its requester takes it.

The key comes from SECRET_ENCRYPTION_KEY or a generated key file (0600). Taking a secret destroys the
stored copy in the same transaction, so it can be taken once.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from .errors import SecretUnavailableError
from .journal import Journal


def load_key(key: str | None, key_file: Path) -> bytes:
    """The Fernet key: configured, or read from (and if missing, generated into) a 0600 file. Blocking."""
    if key:
        return key.encode()
    if key_file.exists():
        return key_file.read_bytes().strip()
    key_file.parent.mkdir(parents=True, exist_ok=True)
    new = Fernet.generate_key()
    fd = os.open(key_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(new)
    return new


class Vault:
    def __init__(self, journal: Journal, key: bytes) -> None:
        self._journal = journal
        self._fernet = Fernet(key)

    def seal(self, c: sqlite3.Connection, job_id: str, key_id: str, secret: str, ttl: float) -> None:
        """Store inside the caller's transaction (so the key id and the secret are journalled together)."""
        now = time.time()
        c.execute(
            "INSERT OR REPLACE INTO vault (job_id, key_id, ciphertext, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
            (job_id, key_id, self._fernet.encrypt(secret.encode()), now, now + ttl),
        )

    async def available(self, job_id: str) -> bool:
        return await self._journal.tx(lambda c: c.execute("SELECT 1 FROM vault WHERE job_id = ?", (job_id,)).fetchone() is not None)

    def take_in(self, c: sqlite3.Connection, job_id: str) -> tuple[str, str]:
        """(key id, secret text), deleting the row; inside the caller's transaction."""
        found = self.peek_in(c, job_id)
        c.execute("DELETE FROM vault WHERE job_id = ?", (job_id,))
        return found

    def peek_in(self, c: sqlite3.Connection, job_id: str) -> tuple[str, str]:
        """(key id, secret text), keeping the row; inside the caller's transaction."""
        row = c.execute("SELECT key_id, ciphertext, expires_at FROM vault WHERE job_id = ?", (job_id,)).fetchone()
        if row is None:
            raise SecretUnavailableError(
                "The client secret is no longer available: it was already retrieved, or it expired and was removed.",
                action="If it never reached Copilot Studio, select 'Make a new client secret' on the step's card.",
            )
        try:
            return row["key_id"], self._fernet.decrypt(row["ciphertext"]).decode()
        except InvalidToken:
            raise SecretUnavailableError(
                "The stored client secret cannot be decrypted with the configured key.",
                action="SECRET_ENCRYPTION_KEY or SECRET_KEY_FILE changed; use Retry on the client secret step to make a new one.",
            ) from None

    def destroy(self, c: sqlite3.Connection, job_id: str) -> str | None:
        row = c.execute("SELECT key_id FROM vault WHERE job_id = ?", (job_id,)).fetchone()
        c.execute("DELETE FROM vault WHERE job_id = ?", (job_id,))
        return str(row["key_id"]) if row else None

    async def expired(self) -> list[tuple[str, str]]:
        now = time.time()
        rows = await self._journal.tx(lambda c: list(c.execute("SELECT job_id, key_id FROM vault WHERE expires_at <= ?", (now,))))
        return [(r["job_id"], r["key_id"]) for r in rows]
