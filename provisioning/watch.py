"""Day two: the watch over every completed setup (lease "watch": one instance at a time, anywhere).

Each pass brings the `setups` table up to date with the jobs that completed (the newest completed job of an agent
says what was approved), then checks the setups that are due: the credential (a client secret's `endDateTime`
against Graph's own clock; a federated credential still present), and drift — the setup re-planned against the
tenant exactly as a repair would be, so what the check reports is what "Put it back" would change.

A finding becomes an event on the setup's last job (the notifier turns it into a card in that job's
conversation) in the same transaction that records it as sent: each expiry notice (30, 7, 1 days, expired) and each
drift goes out once, also across restarts and instances."""

from __future__ import annotations

import dataclasses
import logging
import time
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from store import Fence, JobStateChanged, LeaseLost, NewEvent

from .approvals import Approvals
from .core import Core
from .errors import JobStateError, ProvisioningError
from .journal import SERVICE, JobRecord, audit, event
from .models import (
    CLIENT_SECRET,
    REMOVE,
    REPAIR,
    ROTATE,
    SETUP,
    EventKind,
    JobStatus,
    Plan,
    PlannedStep,
    SetupRequest,
    StepAction,
    StepName,
)
from .setups import CHANGING
from .steps.base import parse_time

log = logging.getLogger(__name__)
LEASE = "watch"
THRESHOLDS = (30, 7, 1, 0)  # days before a client secret expires that a notice goes out (0: it has expired)
RETRY_FAILED_CHECK = 3600.0  # a check that could not read the tenant is tried again within the hour
# steps whose change is not drift: the credential has its own check, and a rotation's retirement is not a setting
NOT_DRIFT = {StepName.CLIENT_SECRET, StepName.RETIRE_CREDENTIAL}
FOLLOWS_NEW_CREDENTIAL = {StepName.COPILOT_AUTHENTICATION, StepName.PUBLISH}


def expected_of(job: JobRecord, previous: dict[str, Any] | None) -> dict[str, Any]:
    """What a completed job leaves approved: its request (as a setup), the app registration and the credential.
    A rotation does not restate what it did not touch (Customer Service, secured access): those stay as before."""
    request = job.request
    before = dict(previous or {})
    base = SetupRequest.from_dict(before["request"]) if before.get("request") else request
    kept = dataclasses.replace(request, purpose=SETUP, retire=(), connect_customer_service=base.connect_customer_service,
                               require_secured_access=base.require_secured_access) if request.purpose != SETUP else \
        dataclasses.replace(request, retire=())
    app = {r["name"]: r for r in job.steps}.get(StepName.APP_REGISTRATION.value, {}).get("outputs") or {}
    out: dict[str, Any] = {
        "request": kept.to_dict(), "agent": job.plan.get("agent") or {}, "conversation": job.tags.get("conversation", ""),
        "requested_by": job.requested_by.to_dict(), "approved_by": job.approved_by.to_dict(),
        "app_object_id": str(job.data.get("app_object_id") or app.get("object_id") or before.get("app_object_id") or ""),
        "client_id": str(job.data.get("app_id") or app.get("client_id") or before.get("client_id") or ""),
        "credential": request.credential,
    }
    if request.credential == CLIENT_SECRET:
        made = job.data.get("secret_key_id")
        old = before.get("secret") or {}
        out["secret"] = {"key_id": str(made), "end": str(job.data.get("secret_end") or "")} if made else old
    else:
        out["federated"] = {"id": str(job.data.get("federated_credential_id") or (before.get("federated") or {}).get("id") or "")}
    return out


def drift_of(plan: Plan, credential_renewed: bool) -> list[dict[str, Any]]:
    """The steps a repair would change, as findings: what was approved, what the tenant shows now."""
    found: list[dict[str, Any]] = []
    credential_renewed = credential_renewed or any(
        s.step == StepName.FEDERATED_CREDENTIAL and s.action == StepAction.CREATE and not s.skip_reason for s in plan.steps)
    for s in plan.steps:
        if s.skip_reason or s.action == StepAction.NO_CHANGE or s.step in NOT_DRIFT:
            continue
        if credential_renewed and s.step in FOLLOWS_NEW_CREDENTIAL:
            continue  # a credential that is gone or expired makes these run again; the credential finding says why
        found.append(_finding(s))
    return found


def _finding(s: PlannedStep) -> dict[str, Any]:
    changes = [{"field": c.field, "approved": _text(c.after), "now": _text(c.before), "value": c.before} for c in s.changes]
    return {"step": s.step.value, "what": s.step.label, "summary": s.summary, "changes": changes, "notes": list(s.notes)}


def _text(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "(none)"
    return str(value)


def drift_key(findings: list[dict[str, Any]]) -> list[str]:
    return sorted(f"{f['step']}:" + ";".join(f"{c['field']}={c['now']}" for c in f["changes"]) for f in findings)


class Watch:
    def __init__(self, core: Core, approvals: Approvals) -> None:
        self.core = core
        self.approvals = approvals
        self._settled: set[str] = set()  # completed jobs already looked at (not the newest of their agent, or recorded)

    @property
    def interval(self) -> float:
        return self.core.settings.watch_interval.total_seconds()

    async def reconcile(self) -> int:
        """Record every agent's newest completed job as its setup; the number of setups recorded or changed."""
        store = self.core.store
        ids = [i for i in await store.jobs.ids(statuses=[JobStatus.COMPLETED.value]) if i not in self._settled]
        if not ids:
            return 0
        rows = {r["subject"]: r for r in await store.setups.all()}
        newest: dict[str, JobRecord] = {}
        for snap in await store.jobs.snapshots(ids):
            job = JobRecord.of(snap)
            if job.subject and (job.subject not in newest or job.updated_at > newest[job.subject].updated_at):
                newest[job.subject] = job
        changed = 0
        for subject, job in newest.items():
            row = rows.get(subject)
            if row is not None and row["job_id"] != job.id:
                current = await store.jobs.get(row["job_id"])
                if current is not None and float(current.job["updated_at"]) >= job.updated_at:
                    continue
            if row is None or row["job_id"] != job.id:
                await self._record(subject, job, row)
                changed += 1
        self._settled.update(ids)  # each is recorded now, or older than its agent's newest
        return changed

    async def _record(self, subject: str, job: JobRecord, row: dict[str, Any] | None) -> None:
        previous = row["expected"] if row else None
        expected = expected_of(job, previous)
        same_credential = bool(previous) and ((previous or {}).get("secret"), (previous or {}).get("federated")) == (expected.get("secret"), expected.get("federated"))
        await self.core.store.setups.put(
            subject, job_id=job.id, status="removed" if job.request.purpose == REMOVE else "active", expected=expected,
            next_check_at=time.time(), findings=None if job.request.purpose == ROTATE else [],
            notices=None if same_credential else [])

    async def run_once(self, fence: Fence, renew: Callable[[], Awaitable[bool]]) -> int:
        """One pass: reconcile, then check every due setup, as long as the lease holds. The number checked."""
        await self.reconcile()
        checked = 0
        for row in await self.core.store.setups.due(time.time()):
            if not await renew():
                return checked
            try:
                await self.check(row["subject"], fence=fence)
            except JobStateChanged:
                continue  # re-recorded, or a change started meanwhile: the next pass decides
            except LeaseLost:
                return checked  # another instance took over the watch: it decides
            checked += 1
        return checked

    async def check(self, subject: str, *, fence: Fence | None = None) -> dict[str, Any]:
        """Check one setup now; returns its row as recorded. Findings not reported before become events."""
        row = await self.core.store.setups.get(subject)
        if row is None or row["status"] != "active":
            raise ProvisioningError("There is no active setup for that agent.", action="Type status to see the setups.")
        expected, now = row["expected"], time.time()
        if await self.core.store.jobs.ids(statuses=CHANGING, subject=subject):
            # half of a change is not drift: look again once it ends (its completion is recorded and checked at once)
            if fence is None:  # asked for now ("Check now", the command line): say why nothing was checked
                raise JobStateError(f"A change to the setup of '{expected['agent'].get('name', '')}' is in progress, so it was not checked.",
                                    action="It is checked as soon as the change ends; its progress card shows where it is.")
            await self.core.store.setups.update(subject, row["updated_at"], {"next_check_at": now + min(self.interval, RETRY_FAILED_CHECK)}, fence=fence)
            return await self._get(subject)
        try:
            credential = await self._credential(expected)
            plan, _ctx = await self.approvals.plan(dataclasses.replace(SetupRequest.from_dict(expected["request"]), purpose=REPAIR))
        except ProvisioningError as exc:
            result = f"The check could not read the tenant: {exc.user_message()}"
            log.warning("day-two check of %s failed: %s", subject, exc.user_message())
            await self.core.store.setups.update(subject, row["updated_at"], {"last_check_at": now, "last_result": result,
                                                                             "next_check_at": now + min(self.interval, RETRY_FAILED_CHECK)}, fence=fence)
            return await self._get(subject)
        drift = drift_of(plan, credential.get("renew", False))
        if credential.get("finding"):
            drift.insert(0, credential["finding"])
        events, notices = self._expiry_events(expected, credential, list(row["notices"]))
        accepted = set(expected.get("accepted") or [])
        drift = [f for f in drift if drift_key([f])[0] not in accepted]  # changes someone chose to keep
        was, new = drift_key(row["findings"]), drift_key(drift)
        if new != was:
            if drift:
                events.append(event(EventKind.DRIFT_FOUND, message=f"The setup of '{expected['agent'].get('name', '')}' changed since it was approved.",
                                    data={"subject": subject, "findings": drift, "noticed_at": _iso(now)}))
            else:
                events.append(event(EventKind.DRIFT_RESOLVED, message="The setup is as approved again.", data={"subject": subject}))
        result = self._summary(credential, drift)
        fields = {"last_check_at": now, "last_result": result, "next_check_at": now + self.interval, "findings": drift, "notices": notices}
        await self.core.store.setups.update(subject, row["updated_at"], fields, fence=fence, job_id=row["job_id"], events=events,
                                            audit=[audit(SERVICE, "checked", subject=subject, result=result)] if events else [],
                                            unless=CHANGING)
        return await self._get(subject)

    async def _get(self, subject: str) -> dict[str, Any]:
        row = await self.core.store.setups.get(subject)
        assert row is not None
        return row

    async def _credential(self, expected: dict[str, Any]) -> dict[str, Any]:
        """The credential as Graph shows it now: days left for a client secret, presence for a federated one."""
        object_id = str(expected.get("app_object_id") or "")
        if not object_id:
            return {}
        app, server_now = await self.core.graph.application_and_time(object_id, step="watch")
        if expected.get("credential") != CLIENT_SECRET:
            return {}
        key_id = str((expected.get("secret") or {}).get("key_id") or "")
        found = next((c for c in app.get("passwordCredentials") or [] if str(c.get("keyId")) == key_id), None)
        if found is None:
            return {"renew": True, "finding": {"step": StepName.CLIENT_SECRET.value, "what": StepName.CLIENT_SECRET.label,
                                               "summary": "The client secret this bot made is no longer on the app registration",
                                               "changes": [{"field": "passwordCredentials", "approved": f"key {key_id[:8]}…", "now": "(none)"}],
                                               "notes": ["the agent's sign-in fails until a new secret is entered in Copilot Studio"]}}
        end = parse_time(found.get("endDateTime"))
        at = server_now or datetime.now(timezone.utc)
        days = (end - at).total_seconds() / 86400 if end else None
        return {"days_left": days, "expires": found.get("endDateTime"), "renew": days is not None and days <= 0}

    @staticmethod
    def _expiry_events(expected: dict[str, Any], credential: dict[str, Any], notices: list[int]) -> tuple[list[NewEvent], list[int]]:
        days = credential.get("days_left")
        if days is None:
            return [], notices
        due = [t for t in THRESHOLDS if days <= t and t not in notices]
        if not due:
            return [], notices
        threshold = min(due)  # the most urgent; the ones it passes are not sent late
        name = expected["agent"].get("name", "")
        text = (f"The client secret of '{name}' has expired: the agent's sign-in fails." if threshold == 0 else
                f"The client secret of '{name}' expires in {max(1, round(days))} day{'s' if round(days) != 1 else ''}.")
        data = {"days_left": days, "threshold": threshold, "expires": credential.get("expires"), "client_id": expected.get("client_id")}
        return [event(EventKind.SECRET_EXPIRING, message=text, data=data)], sorted(set(notices) | set(due), reverse=True)

    @staticmethod
    def _summary(credential: dict[str, Any], drift: list[dict[str, Any]]) -> str:
        parts = []
        days = credential.get("days_left")
        if days is not None:
            left = max(1, round(days))
            parts.append("the client secret has expired" if days <= 0 else f"the client secret expires in {left} day{'s' if left != 1 else ''}")
        parts.append(f"{len(drift)} change{'s' if len(drift) != 1 else ''} since approval" if drift else "as approved")
        return "; ".join(parts).capitalize() + "."


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat()
