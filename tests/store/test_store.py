"""The storage seam's promises, on both backends (SQLite and a real PostgreSQL server): etags, fenced leases,
preconditions on job writes, events in order, migrations forward only, and change notifications."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from store import (
    Database,
    EtagConflict,
    JobChange,
    JobStateChanged,
    LeaseLost,
    MigrationError,
    NewAudit,
    NewEvent,
    NewJob,
    NewRemoval,
    Sealed,
    Store,
    open_database,
)
from store.migrations import LATEST


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    db = open_database(database_url)
    await db.open()
    try:
        yield Store(db)
    finally:
        await db.close()


def new_job(job_id: str = "job-1", *, status: str = "queued") -> NewJob:
    return NewJob(id=job_id, status=status, plan_hash="h", plan={"request": {}}, requested_by={"id": "r"}, approved_by={"id": "a"},
                  tags={"conversation": "c1"}, data={"n": 0}, steps=[("app_registration", "pending"), ("publish", "pending")],
                  subject="env|bot", events=[NewEvent("job_started", message="Approved")], audit=[NewAudit({"id": "a"}, "approved")])


async def test_key_value_etags_follow_the_storage_contract(store: Store) -> None:
    tags = await store.kv.write({"a": (None, '{"x":1}'), "b": ("*", '{"y":2}')})
    found = await store.kv.read(["a", "b", "missing"])
    assert set(found) == {"a", "b"} and found["a"] == (tags["a"], '{"x":1}')
    newer = await store.kv.write({"a": (tags["a"], '{"x":2}')})
    with pytest.raises(EtagConflict):
        await store.kv.write({"a": (tags["a"], '{"x":3}')})  # the etag read before the last write is stale
    with pytest.raises(KeyError):  # botbuilder's contract: a conflict is a KeyError
        await store.kv.write({"b": ("stale", "{}")})
    with pytest.raises(ValueError):
        await store.kv.write({"a": ("", "{}")})
    assert (await store.kv.read(["a"]))["a"] == (newer["a"], '{"x":2}')
    with pytest.raises(EtagConflict):  # atomic: nothing of a failed batch is written
        await store.kv.write({"c": (None, "{}"), "a": ("stale", "{}")})
    assert await store.kv.read(["c"]) == {}
    await store.kv.delete(["a", "unknown"])
    assert await store.kv.read(["a"]) == {}
    assert await store.kv.keys("b") == ["b"]


async def test_a_lease_taken_over_fences_out_its_old_holder(store: Store) -> None:
    first = await store.locks.acquire("job:1", "worker-a", ttl=0.2)
    assert first is not None and first.generation == 1
    assert await store.locks.acquire("job:1", "worker-b", ttl=5) is None  # held
    await asyncio.sleep(0.3)  # worker-a stalls past its lease
    second = await store.locks.acquire("job:1", "worker-b", ttl=5)
    assert second is not None and second.generation == 2
    assert not await store.locks.renew(first, ttl=5), "the stalled holder cannot renew a lease taken over"
    await store.jobs.create(new_job("1"))
    with pytest.raises(LeaseLost):
        await store.jobs.apply(JobChange("1", fence=first, data={"n": 99}))
    await store.jobs.apply(JobChange("1", fence=second, data={"n": 1}))
    snapshot = await store.jobs.get("1")
    assert snapshot is not None and snapshot.job["data"] == {"n": 1}
    await store.locks.release(second)
    third = await store.locks.acquire("job:1", "worker-a", ttl=5)
    assert third is not None and third.generation == 3, "generations only grow, also across a release"
    with pytest.raises(LeaseLost):
        await store.jobs.guard("1", second, ["queued"])


async def test_job_writes_check_status_and_version_and_apply_all_or_nothing(store: Store) -> None:
    assert await store.jobs.create(new_job())
    assert not await store.jobs.create(new_job()), "the same id twice is refused, not duplicated"
    snap = await store.jobs.get("job-1")
    assert snap is not None and snap.version == 0 and [s["name"] for s in snap.steps] == ["app_registration", "publish"]
    await store.jobs.apply(JobChange("job-1", allow=["queued"], status="cancelled", events=[NewEvent("job_cancelled")]))
    before = await store.jobs.last_seq()
    with pytest.raises(JobStateChanged) as refused:
        await store.jobs.apply(JobChange("job-1", allow=["queued", "running"], status="running",
                                         steps={"publish": {"status": "done"}}, events=[NewEvent("step_succeeded")]))
    assert refused.value.status == "cancelled"
    after = await store.jobs.get("job-1")
    assert after is not None and after.status == "cancelled" and after.step("publish")["status"] == "pending"  # type: ignore[index]
    assert await store.jobs.last_seq() == before, "a refused change appends no event"
    with pytest.raises(JobStateChanged):
        await store.jobs.apply(JobChange("job-1", version=0, data={"n": 5}))  # version moved to 1 with the cancel
    await store.jobs.apply(JobChange("job-1", version=1, data={"n": 5}))


async def test_the_vault_row_timers_and_removals_change_with_the_job(store: Store) -> None:
    await store.jobs.create(new_job())
    await store.jobs.apply(JobChange("job-1", seal=Sealed("key-1", "ciphertext", time.time() + 60), timers=[("reminder", time.time() - 1)]))
    row = await store.vault.get("job-1")
    assert row is not None and row["key_id"] == "key-1" and row["shown_at"] is None
    assert await store.vault.mark_shown("job-1", "key-1") and not await store.vault.mark_shown("job-1", "other")
    due = await store.jobs.due_timers(time.time())
    assert [t["kind"] for t in due] == ["reminder"]
    await store.jobs.apply(JobChange("job-1", fire_timer=due[0]["id"], steps={"publish": {"status": "done"}}))
    with pytest.raises(JobStateChanged):  # fired exactly once
        await store.jobs.apply(JobChange("job-1", fire_timer=due[0]["id"]))
    with pytest.raises(JobStateChanged):  # the decision was made on a secret that is no longer there
        await store.jobs.apply(JobChange("job-1", sealed_key="key-2", unseal=True))
    await store.jobs.apply(JobChange("job-1", sealed_key="key-1", unseal=True,
                                     removals=[NewRemoval("app-obj", "password", "key-1", "expired")]))
    assert await store.vault.get("job-1") is None
    pending = await store.removals.due(time.time())
    assert [(r["kind"], r["key_id"], r["reason"]) for r in pending] == [("password", "key-1", "expired")]
    await store.jobs.apply(JobChange("job-1", removals=[NewRemoval("app-obj", "password", "key-1", "again")]))
    assert len(await store.removals.for_job("job-1")) == 1, "one removal per credential"
    await store.removals.failed(pending[0]["id"], "503", retry_in=60)
    assert await store.removals.due(time.time()) == []
    await store.removals.done(pending[0]["id"])
    assert await store.removals.pending() == 0


async def test_events_come_back_in_order_with_every_one_seen(store: Store) -> None:
    for n in range(5):
        await store.jobs.create(new_job(f"j{n}"))

    async def write(job: str) -> None:
        for i in range(10):
            await store.jobs.apply(JobChange(job, events=[NewEvent("step_started", step="publish", message=f"{job}-{i}")]))

    await asyncio.gather(*(write(f"j{n}") for n in range(5)))
    events = await store.jobs.events_after(0, limit=1000)
    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert len(events) == 5 + 50
    for n in range(5):
        mine = [e["message"] for e in events if e["job_id"] == f"j{n}" and e["kind"] == "step_started"]
        assert mine == [f"j{n}-{i}" for i in range(10)]


async def test_audit_entries_stand_alone_for_refusals(store: Store) -> None:
    await store.jobs.record_audit(None, NewAudit({"id": "m"}, "refused", {"why": "not an approver"}))
    await store.jobs.record_audit("no-such-job", NewAudit({"id": "m"}, "refused", {"why": "forged"}))
    entries = await store.jobs.audit_log(None)
    assert [e["detail"]["why"] for e in entries] == ["not an approver", "forged"]


async def test_a_commit_wakes_a_waiter_in_another_database_object(database_url: str) -> None:
    """Two instances on one database: a change committed by one wakes the other (PostgreSQL: LISTEN/NOTIFY);
    on SQLite the same process's waiters wake and other processes poll."""
    first, second = open_database(database_url), open_database(database_url)
    await first.open()
    await second.open()
    try:
        store_a, watcher = Store(first), (second if first.dialect == "postgresql" else first)
        await store_a.jobs.create(new_job())
        seen = watcher.changes
        waiting = asyncio.create_task(watcher.wait_for_change(seen, timeout=10))
        await asyncio.sleep(0.2)
        started = time.monotonic()
        await store_a.jobs.apply(JobChange("job-1", events=[NewEvent("step_started")]))
        assert await waiting
        assert time.monotonic() - started < 2
    finally:
        await first.close()
        await second.close()


async def test_migrations_run_once_and_refuse_a_newer_database(database_url: str) -> None:
    db = open_database(database_url)
    await db.open()
    await db.close()
    again = open_database(database_url)
    await again.open()  # nothing left to apply
    async with again.transaction() as tx:
        rows = await tx.fetchall("SELECT version FROM schema_migrations ORDER BY version")
        assert [r["version"] for r in rows] == list(range(1, LATEST + 1))
        await tx.execute("INSERT INTO schema_migrations (version, description, applied_at) VALUES (?, ?, ?)", LATEST + 1, "future", 0.0)
    await again.close()
    newer = open_database(database_url)
    with pytest.raises(MigrationError, match="newer"):
        await newer.open()
    await newer.close()


def test_an_existing_database_of_the_previous_version_upgrades_in_place(tmp_path: Path) -> None:
    """data/state.db as the bot wrote it before the storage seam: its jobs survive the migration."""
    path = tmp_path / "state.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE jobs (id TEXT PRIMARY KEY, status TEXT NOT NULL, plan_hash TEXT NOT NULL, plan TEXT NOT NULL,
            requested_by TEXT NOT NULL, approved_by TEXT NOT NULL, tags TEXT NOT NULL, data TEXT NOT NULL,
            created_at REAL NOT NULL, updated_at REAL NOT NULL);
        CREATE TABLE leases (job_id TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL);
        CREATE TABLE vault (job_id TEXT PRIMARY KEY, key_id TEXT NOT NULL, ciphertext BLOB NOT NULL, created_at REAL NOT NULL,
            expires_at REAL NOT NULL);
        INSERT INTO jobs VALUES ('old', 'completed', 'h', '{}', '{}', '{}', '{}', '{}', 1, 1);
    """)
    conn.close()

    async def upgrade() -> None:
        db: Database = open_database(str(path))
        await db.open()
        try:
            snap = await Store(db).jobs.get("old")
            assert snap is not None and snap.status == "completed" and snap.version == 0
        finally:
            await db.close()

    asyncio.run(upgrade())
