"""The setups the day-two watch looks after: one row per agent (its `subject`), naming the last job that set it up,
what was approved (`expected`), when to check it next, what the last check found, and which notices were sent (so
each expiry notice goes out once, also across restarts). Rows change by compare-and-set on `updated_at`."""

from __future__ import annotations

import json
import time
from typing import Any, Iterable

from .base import Database, JobStateChanged, LeaseLost, Row
from .jobs import NewAudit, NewEvent, append_audit, append_event
from .locks import Fence

_JSON = ("expected", "findings", "notices")


def _row(row: Row) -> Row:
    for key in _JSON:
        row[key] = json.loads(row[key])
    return row


class Setups:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def get(self, subject: str) -> Row | None:
        async with self.db.read() as tx:
            row = await tx.fetchone("SELECT * FROM setups WHERE subject = ?", subject)
        return _row(row) if row else None

    async def all(self, statuses: Iterable[str] | None = None) -> list[Row]:
        wanted = list(statuses) if statuses is not None else None
        async with self.db.read() as tx:
            if wanted is None:
                rows = await tx.fetchall("SELECT * FROM setups ORDER BY subject")
            else:
                rows = await tx.fetchall(f"SELECT * FROM setups WHERE status IN ({', '.join('?' * len(wanted))}) ORDER BY subject", *wanted)
        return [_row(r) for r in rows]

    async def due(self, now: float) -> list[Row]:
        async with self.db.read() as tx:
            rows = await tx.fetchall("SELECT * FROM setups WHERE status = 'active' AND next_check_at <= ? ORDER BY next_check_at", now)
        return [_row(r) for r in rows]

    async def put(self, subject: str, *, job_id: str, status: str, expected: dict[str, Any], next_check_at: float,
                  findings: list[Any] | None = None, notices: list[Any] | None = None) -> None:
        """Record (or re-record, after a new job for the agent completed) what was approved. `findings` and `notices`
        replace the row's when given, and are kept when None (a new row starts with none)."""
        now = time.time()
        async with self.db.transaction() as tx:
            old = await tx.fetchone(f"SELECT * FROM setups WHERE subject = ?{tx.for_update}", subject)
            if old is None:
                await tx.execute("INSERT INTO setups (subject, job_id, status, expected, next_check_at, findings, notices, updated_at) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", subject, job_id, status, json.dumps(expected), next_check_at,
                                 json.dumps(findings or []), json.dumps(notices or []), now)
                return
            kept_findings = old["findings"] if findings is None else json.dumps(findings)
            kept_notices = old["notices"] if notices is None else json.dumps(notices)
            await tx.execute("UPDATE setups SET job_id = ?, status = ?, expected = ?, next_check_at = ?, findings = ?, notices = ?, updated_at = ?, "
                             "last_check_at = NULL, last_result = '' WHERE subject = ?", job_id, status, json.dumps(expected), next_check_at, kept_findings, kept_notices,
                             max(now, float(old["updated_at"]) + 1e-6), subject)

    async def update(self, subject: str, seen: float, fields: dict[str, Any], *, fence: Fence | None = None, job_id: str | None = None,
                     events: Iterable[NewEvent] = (), audit: Iterable[NewAudit] = (), unless: Iterable[str] = ()) -> None:
        """Change fields of a row as it was when read (`seen` = its updated_at), and append `events` and `audit` to
        `job_id`, all in one transaction: a notice is recorded as sent exactly when its event exists. JobStateChanged
        if the row changed since, or a job for the subject is in one of the statuses `unless` names; LeaseLost if
        `fence` no longer holds."""
        values = {k: (json.dumps(v) if k in _JSON else v) for k, v in fields.items()}
        now = time.time()
        values["updated_at"] = max(now, seen + 1e-6)
        assigns = ", ".join(f"{k} = ?" for k in values)
        events, audit = list(events), list(audit)
        async with self.db.transaction() as tx:
            if events:
                await tx.serialize_events()
            if fence is not None:
                held = await tx.fetchone(f"SELECT 1 AS held FROM locks WHERE name = ? AND owner = ? AND generation = ?{tx.for_update}",
                                         fence.name, fence.owner, fence.generation)
                if held is None:
                    raise LeaseLost(fence.name, fence.owner, fence.generation)
            busy = list(unless)
            guard = (f" AND NOT EXISTS (SELECT 1 FROM jobs WHERE jobs.subject = setups.subject AND jobs.status IN ({', '.join('?' * len(busy))}))"
                     if busy else "")
            changed = await tx.execute(f"UPDATE setups SET {assigns} WHERE subject = ? AND updated_at = ?{guard}", *values.values(), subject, seen, *busy)
            if changed != 1:
                raise JobStateChanged(subject, "the setup's record changed meanwhile")
            for e in events:
                assert job_id is not None, "events belong to a job"
                await append_event(tx, job_id, e, now)
            for entry in audit:
                await append_audit(tx, job_id, entry, now)
            if events:
                tx.notify_on_commit()
