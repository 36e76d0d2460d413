"""Leases with fencing: a named lock held by one owner at a time, for a limited time, with a generation number.

Every take-over increments the generation, so a holder that stalled past its lease and comes back can be told
apart from the new holder: writes made on its behalf carry (owner, generation) and are refused once either
changed (store/jobs.py). A released lease keeps its row (and generation), so generations only ever grow.
Names: "job:<id>" (the worker running a job), "notifier" (the instance posting to Teams), "sweeper" (secret
expiry and credential removals), "watch" (the day-two checks).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from .base import Database


@dataclass(frozen=True)
class Fence:
    """What a writer shows to prove it still holds `name`."""

    name: str
    owner: str
    generation: int


class Locks:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def acquire(self, name: str, owner: str, ttl: float) -> Fence | None:
        """Take the lease (or extend it, if `owner` holds it); None while someone else holds an unexpired one."""
        now = time.time()
        async with self.db.transaction() as tx:
            row = await tx.fetchone(f"SELECT owner, generation, expires_at FROM locks WHERE name = ?{tx.for_update}", name)
            if row is None:
                inserted = await tx.execute("INSERT INTO locks (name, owner, generation, expires_at) VALUES (?, ?, 1, ?) "
                                            "ON CONFLICT (name) DO NOTHING", name, owner, now + ttl)
                return Fence(name, owner, 1) if inserted == 1 else None
            if row["owner"] == owner and row["expires_at"] > now:
                await tx.execute("UPDATE locks SET expires_at = ? WHERE name = ?", now + ttl, name)
                return Fence(name, owner, int(row["generation"]))
            if row["expires_at"] > now:
                return None
            generation = int(row["generation"]) + 1
            await tx.execute("UPDATE locks SET owner = ?, generation = ?, expires_at = ? WHERE name = ?", owner, generation, now + ttl, name)
            return Fence(name, owner, generation)

    async def renew(self, fence: Fence, ttl: float) -> bool:
        """Extend a lease still held under `fence` (also one that expired while nobody took it over)."""
        async with self.db.transaction() as tx:
            changed = await tx.execute("UPDATE locks SET expires_at = ? WHERE name = ? AND owner = ? AND generation = ?",
                                       time.time() + ttl, fence.name, fence.owner, fence.generation)
        return changed == 1

    async def release(self, fence: Fence) -> None:
        async with self.db.transaction() as tx:
            await tx.execute("UPDATE locks SET owner = '', expires_at = 0 WHERE name = ? AND owner = ? AND generation = ?",
                             fence.name, fence.owner, fence.generation)

    async def holder(self, name: str) -> tuple[str, float] | None:
        """Who holds `name` and until when, if anyone does now."""
        async with self.db.read() as tx:
            row = await tx.fetchone("SELECT owner, expires_at FROM locks WHERE name = ?", name)
        if row is None or not row["owner"] or row["expires_at"] <= time.time():
            return None
        return str(row["owner"]), float(row["expires_at"])
