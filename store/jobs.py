"""The provisioning journal's rows: jobs, their steps, events, audit entries, timers and the hand-off vault row.

Every write on behalf of a job is one `JobChange`, applied in one transaction that first checks, under the row
locks, that the job is in a status the change allows, at the version the writer read (when it says), and that the
writer still holds its lease (when it shows a `Fence`). So a worker that stalled past its lease, or a job that was
cancelled meanwhile, cannot be written over: the change is refused with LeaseLost or JobStateChanged, and nothing
of it is applied. Events get increasing `seq` numbers; listeners are woken when the change commits.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from .base import Database, JobStateChanged, LeaseLost, Row, Tx
from .locks import Fence

FINISHED = ("done", "overridden", "skipped")
_STEP_JSON = ("outputs", "instructions")


@dataclass(frozen=True)
class NewEvent:
    kind: str
    step: str | None = None
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class NewAudit:
    actor: dict[str, Any]
    action: str
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Sealed:
    """The hand-off vault row: the secret's key id and its ciphertext (never the text)."""

    key_id: str
    ciphertext: str
    expires_at: float


@dataclass(frozen=True)
class NewRemoval:
    """A credential to remove from an app registration, kept until Graph confirms it is gone."""

    object_id: str
    kind: str  # "password", "federated" or "application"
    key_id: str
    reason: str


@dataclass
class JobChange:
    job_id: str
    fence: Fence | None = None
    allow: Iterable[str] | None = None  # the job's status must be one of these
    version: int | None = None  # the job must still be at this version
    status: str | None = None
    data: dict[str, Any] | None = None
    plan: dict[str, Any] | None = None
    plan_hash: str | None = None
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)  # step name → columns to set
    events: list[NewEvent] = field(default_factory=list)
    audit: list[NewAudit] = field(default_factory=list)
    seal: Sealed | None = None
    unseal: bool = False  # delete the vault row
    sealed_key: str | None = None  # the vault row must exist and hold this key id (decided on what was read)
    timers: list[tuple[str, float]] = field(default_factory=list)  # (kind, due_at), kept if one of that kind exists
    cancel_timers: bool = False
    fire_timer: int | None = None  # this timer must still be unfired; it is marked fired
    removals: list[NewRemoval] = field(default_factory=list)


@dataclass(frozen=True)
class NewJob:
    id: str
    status: str
    plan_hash: str
    plan: dict[str, Any]
    requested_by: dict[str, Any]
    approved_by: dict[str, Any]
    tags: dict[str, str]
    data: dict[str, Any]
    steps: list[tuple[str, str]]  # (name, status), in run order
    kind: str = "setup"
    subject: str = ""
    events: list[NewEvent] = field(default_factory=list)
    audit: list[NewAudit] = field(default_factory=list)


@dataclass(frozen=True)
class JobSnapshot:
    job: Row  # JSON columns parsed
    steps: list[Row]  # in run order, JSON columns parsed
    vault: Row | None  # key_id, created_at, expires_at, shown_at (no ciphertext)

    @property
    def version(self) -> int:
        return int(self.job["version"])

    @property
    def status(self) -> str:
        return str(self.job["status"])

    def step(self, name: str) -> Row | None:
        return next((s for s in self.steps if s["name"] == name), None)

    @property
    def all_finished(self) -> bool:
        return all(s["status"] in FINISHED for s in self.steps)


def _job_row(row: Row) -> Row:
    for key in ("plan", "requested_by", "approved_by", "tags", "data"):
        row[key] = json.loads(row[key])
    return row


def _step_row(row: Row) -> Row:
    row["outputs"] = json.loads(row["outputs"] or "{}")
    row["instructions"] = json.loads(row["instructions"]) if row["instructions"] else None
    return row


async def append_event(tx: Tx, job_id: str, event: NewEvent, at: float) -> int:
    row = await tx.fetchone("INSERT INTO events (job_id, kind, step, message, data, at) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq",
                            job_id, event.kind, event.step, event.message, json.dumps(event.data), at)
    assert row is not None
    return int(row["seq"])


async def append_audit(tx: Tx, job_id: str | None, entry: NewAudit, at: float) -> None:
    await tx.execute("INSERT INTO audit (job_id, at, actor, action, detail) VALUES (?, ?, ?, ?, ?)",
                     job_id, at, json.dumps(entry.actor), entry.action, json.dumps(entry.detail))


class Jobs:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, job: NewJob) -> bool:
        """Insert the job, its steps, events and audit entries; False (and nothing written) if the id exists."""
        now = time.time()
        async with self.db.transaction() as tx:
            if job.events:
                await tx.serialize_events()
            inserted = await tx.execute(
                "INSERT INTO jobs (id, status, plan_hash, plan, requested_by, approved_by, tags, data, created_at, updated_at, "
                "version, kind, subject) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT (id) DO NOTHING",
                job.id, job.status, job.plan_hash, json.dumps(job.plan), json.dumps(job.requested_by), json.dumps(job.approved_by),
                json.dumps(job.tags), json.dumps(job.data), now, now, job.kind, job.subject)
            if inserted != 1:
                return False
            for position, (name, status) in enumerate(job.steps):
                await tx.execute("INSERT INTO steps (job_id, position, name, status) VALUES (?, ?, ?, ?)", job.id, position, name, status)
            for entry in job.audit:
                await append_audit(tx, job.id, entry, now)
            for event in job.events:
                await append_event(tx, job.id, event, now)
            tx.notify_on_commit()
        return True

    async def get(self, job_id: str) -> JobSnapshot | None:
        async with self.db.read() as tx:
            return await self._snapshot(tx, job_id)

    async def _snapshot(self, tx: Tx, job_id: str) -> JobSnapshot | None:
        row = await tx.fetchone("SELECT * FROM jobs WHERE id = ?", job_id)
        if row is None:
            return None
        steps = await tx.fetchall("SELECT * FROM steps WHERE job_id = ? ORDER BY position", job_id)
        vault = await tx.fetchone("SELECT key_id, created_at, expires_at, shown_at FROM vault WHERE job_id = ?", job_id)
        return JobSnapshot(_job_row(row), [_step_row(s) for s in steps], vault)

    async def apply(self, change: JobChange) -> list[int]:
        """Apply `change` atomically, or raise LeaseLost / JobStateChanged and apply nothing. The new events' seqs."""
        now = time.time()
        async with self.db.transaction() as tx:
            if change.events:
                await tx.serialize_events()
            await self.check(tx, change.job_id, change.fence, change.allow, change.version)
            await self._write(tx, change, now)
            seqs = [await append_event(tx, change.job_id, e, now) for e in change.events]
            for entry in change.audit:
                await append_audit(tx, change.job_id, entry, now)
            tx.notify_on_commit()
        return seqs

    async def check(self, tx: Tx, job_id: str, fence: Fence | None, allow: Iterable[str] | None, version: int | None) -> Row:
        """The job row, locked, after checking the change's preconditions (inside the caller's transaction)."""
        row = await tx.fetchone(f"SELECT status, version FROM jobs WHERE id = ?{tx.for_update}", job_id)
        if row is None:
            raise JobStateChanged(job_id, "there is no such job")
        if fence is not None:  # a writer that lost its lease learns that first, whatever else changed
            held = await tx.fetchone(f"SELECT 1 AS held FROM locks WHERE name = ? AND owner = ? AND generation = ?{tx.for_update}",
                                     fence.name, fence.owner, fence.generation)
            if held is None:
                raise LeaseLost(fence.name, fence.owner, fence.generation)
        if allow is not None and row["status"] not in set(allow):
            raise JobStateChanged(job_id, f"it is {row['status']}", status=str(row["status"]))
        if version is not None and int(row["version"]) != version:
            raise JobStateChanged(job_id, f"it changed since version {version} (now {row['version']})", status=str(row["status"]))
        return row

    async def guard(self, job_id: str, fence: Fence | None, allow: Iterable[str]) -> None:
        """Raise unless the job is in `allow` and `fence` still holds: checked before each Microsoft write."""
        async with self.db.read() as tx:
            await self.check(tx, job_id, fence, allow, None)

    async def _write(self, tx: Tx, change: JobChange, now: float) -> None:
        columns: dict[str, Any] = {"updated_at": now}
        if change.status is not None:
            columns["status"] = change.status
        if change.data is not None:
            columns["data"] = json.dumps(change.data)
        if change.plan is not None:
            columns["plan"] = json.dumps(change.plan)
        if change.plan_hash is not None:
            columns["plan_hash"] = change.plan_hash
        sets = ", ".join(f"{k} = ?" for k in columns)
        await tx.execute(f"UPDATE jobs SET {sets}, version = version + 1 WHERE id = ?", *columns.values(), change.job_id)
        for name, fields in change.steps.items():
            values = {k: (json.dumps(v) if k in _STEP_JSON and v is not None else v) for k, v in fields.items()}
            assigns = ", ".join(f"{k} = ?" for k in values)
            await tx.execute(f"UPDATE steps SET {assigns} WHERE job_id = ? AND name = ?", *values.values(), change.job_id, name)
        if change.sealed_key is not None:
            held = await tx.fetchone(f"SELECT key_id FROM vault WHERE job_id = ?{tx.for_update}", change.job_id)
            if held is None or held["key_id"] != change.sealed_key:
                raise JobStateChanged(change.job_id, "its client secret is no longer waiting in the vault")
        if change.unseal:
            await tx.execute("DELETE FROM vault WHERE job_id = ?", change.job_id)
        if change.seal is not None:
            await tx.execute("DELETE FROM vault WHERE job_id = ?", change.job_id)
            await tx.execute("INSERT INTO vault (job_id, key_id, ciphertext, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
                             change.job_id, change.seal.key_id, change.seal.ciphertext, now, change.seal.expires_at)
        if change.cancel_timers:
            await tx.execute("UPDATE timers SET fired_at = ? WHERE job_id = ? AND fired_at IS NULL", now, change.job_id)
        if change.fire_timer is not None:
            fired = await tx.execute("UPDATE timers SET fired_at = ? WHERE id = ? AND job_id = ? AND fired_at IS NULL",
                                     now, change.fire_timer, change.job_id)
            if fired != 1:
                raise JobStateChanged(change.job_id, f"timer {change.fire_timer} has fired already")
        for kind, due in change.timers:
            await tx.execute("INSERT INTO timers (job_id, kind, due_at) VALUES (?, ?, ?) ON CONFLICT (job_id, kind) DO NOTHING",
                             change.job_id, kind, due)
        for removal in change.removals:
            await tx.execute(
                "INSERT INTO credential_removals (job_id, object_id, kind, key_id, reason, created_at, next_attempt_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (object_id, kind, key_id) DO NOTHING",
                change.job_id, removal.object_id, removal.kind, removal.key_id, removal.reason, now, now)

    # ---- queries ----------------------------------------------------------------------------------------------

    async def ids(self, *, statuses: Iterable[str] | None = None, subject: str | None = None, kind: str | None = None) -> list[str]:
        clauses, params = [], []
        if statuses is not None:
            wanted = list(statuses)
            clauses.append(f"status IN ({', '.join('?' * len(wanted))})")
            params.extend(wanted)
        if subject is not None:
            clauses.append("subject = ?")
            params.append(subject)
        if kind is not None:
            clauses.append("kind = ?")
            params.append(kind)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        async with self.db.read() as tx:
            rows = await tx.fetchall(f"SELECT id FROM jobs{where} ORDER BY created_at, id", *params)
        return [str(r["id"]) for r in rows]

    async def snapshots(self, ids: Iterable[str]) -> list[JobSnapshot]:
        out = []
        async with self.db.read() as tx:
            for job_id in ids:
                snap = await self._snapshot(tx, job_id)
                if snap is not None:
                    out.append(snap)
        return out

    async def counts(self) -> dict[str, int]:
        """How many jobs there are in each status."""
        async with self.db.read() as tx:
            rows = await tx.fetchall("SELECT status, COUNT(*) AS n FROM jobs GROUP BY status")
        return {str(r["status"]): int(r["n"]) for r in rows}

    async def finished_but_open(self, statuses: Iterable[str]) -> list[str]:
        """Jobs in `statuses` all of whose steps are finished (a crash came between the last step and completion)."""
        wanted = list(statuses)
        async with self.db.read() as tx:
            rows = await tx.fetchall(
                f"SELECT id FROM jobs WHERE status IN ({', '.join('?' * len(wanted))}) AND NOT EXISTS "
                f"(SELECT 1 FROM steps WHERE steps.job_id = jobs.id AND steps.status NOT IN ({', '.join('?' * len(FINISHED))}))",
                *wanted, *FINISHED)
        return [str(r["id"]) for r in rows]

    async def events_after(self, seq: int, limit: int = 100) -> list[Row]:
        async with self.db.read() as tx:
            rows = await tx.fetchall("SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", seq, limit)
        for row in rows:
            row["data"] = json.loads(row["data"] or "{}")
        return rows

    async def last_seq(self) -> int:
        async with self.db.read() as tx:
            row = await tx.fetchone("SELECT COALESCE(MAX(seq), 0) AS seq FROM events")
        return int(row["seq"]) if row else 0

    async def audit_log(self, job_id: str | None) -> list[Row]:
        async with self.db.read() as tx:
            if job_id is None:
                rows = await tx.fetchall("SELECT * FROM audit WHERE job_id IS NULL ORDER BY id")
            else:
                rows = await tx.fetchall("SELECT * FROM audit WHERE job_id = ? ORDER BY id", job_id)
        for row in rows:
            row["actor"], row["detail"] = json.loads(row["actor"]), json.loads(row["detail"])
        return rows

    async def record_audit(self, job_id: str | None, entry: NewAudit) -> None:
        """An audit entry on its own (a refusal, say): no job change, no event."""
        async with self.db.transaction() as tx:
            if job_id is not None and await tx.fetchone("SELECT 1 AS found FROM jobs WHERE id = ?", job_id) is None:
                job_id = None  # the click named a job that does not exist: keep the entry, unattached
            await append_audit(tx, job_id, entry, time.time())

    async def due_timers(self, now: float) -> list[Row]:
        async with self.db.read() as tx:
            return await tx.fetchall("SELECT id, job_id, kind, due_at FROM timers WHERE fired_at IS NULL AND due_at <= ? ORDER BY due_at", now)

    async def next_timer_at(self) -> float | None:
        """When the earliest timer that has not fired is due (epoch seconds), or None."""
        async with self.db.read() as tx:
            row = await tx.fetchone("SELECT MIN(due_at) AS due FROM timers WHERE fired_at IS NULL")
        return float(row["due"]) if row is not None and row["due"] is not None else None

    async def pending_timers(self, before: float) -> int:
        async with self.db.read() as tx:
            row = await tx.fetchone("SELECT COUNT(*) AS n FROM timers WHERE fired_at IS NULL AND due_at <= ?", before)
        return int(row["n"]) if row else 0
