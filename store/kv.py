"""Documents by key with etags: the bot's conversation and user state, and its records of where each job lives
in Teams. The etag rules are botbuilder's `Storage` contract: None or "*" writes unconditionally, "" is an error,
any other etag must match the stored one (else EtagConflict, a KeyError)."""

from __future__ import annotations

import uuid
from typing import Iterable, Mapping

from .base import Database, EtagConflict, RowCountMismatch, Statement


class KeyValue:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def read(self, keys: Iterable[str]) -> dict[str, tuple[str, str]]:
        """key → (etag, document) for the keys that exist."""
        wanted = list(dict.fromkeys(keys))
        if not wanted:
            return {}
        async with self.db.read() as tx:
            rows = await tx.fetchall(f"SELECT key, etag, doc FROM bot_state WHERE key IN ({', '.join('?' * len(wanted))})", *wanted)
        return {str(r["key"]): (str(r["etag"]), str(r["doc"])) for r in rows}

    async def write(self, changes: Mapping[str, tuple[str | None, str]]) -> dict[str, str]:
        """Write key → (expected etag, document) atomically; the new etags."""
        for key, (etag, _doc) in changes.items():
            if etag == "":
                raise ValueError(f"the etag of '{key}' is empty")
        new: dict[str, str] = {}
        statements: list[Statement] = []
        for key, (etag, doc) in changes.items():
            tag = new[key] = uuid.uuid4().hex
            if etag is None or etag == "*":
                statements.append(Statement("INSERT INTO bot_state (key, etag, doc) VALUES (?, ?, ?) "
                                            "ON CONFLICT (key) DO UPDATE SET etag = excluded.etag, doc = excluded.doc", (key, tag, doc)))
            else:
                statements.append(Statement("UPDATE bot_state SET etag = ?, doc = ? WHERE key = ? AND etag = ?", (tag, doc, key, etag), one_row=True))
        try:
            await self.db.write_all(statements)
        except RowCountMismatch as exc:
            key, (etag, _doc) = list(changes.items())[exc.index]
            raise EtagConflict(f"'{key}' was changed by someone else (etag {etag} is stale)") from None
        return new

    async def delete(self, keys: Iterable[str]) -> None:
        gone = list(keys)
        if gone:
            async with self.db.transaction() as tx:
                await tx.execute(f"DELETE FROM bot_state WHERE key IN ({', '.join('?' * len(gone))})", *gone)

    async def keys(self, prefix: str) -> list[str]:
        async with self.db.read() as tx:
            rows = await tx.fetchall("SELECT key FROM bot_state WHERE key >= ? AND key < ? ORDER BY key", prefix, prefix + "\uffff")
        return [str(r["key"]) for r in rows]
