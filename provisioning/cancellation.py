"""Cancel means cancelled.

Cancelling a job is two moves. The request, at once: the job becomes `cancelling` in one transaction, so no further
change on its behalf is accepted (every job write and every Microsoft write checks the status first), its timers
stop, and a worker that runs it here is interrupted. The finish, by whichever worker takes the job's lease next (so
the old run has stopped or lost its lease): everything this job made is queued for removal — the client secret(s)
it added (also one whose text a crash lost, found by the job's marker), its federated credential, and the app
registration if this job created it — and the job ends `cancelled` for good. The removals are tried at once and
then by the sweeper until Graph confirms each.
"""

from __future__ import annotations

from typing import Any

from store import Fence, JobChange, JobStateChanged, NewRemoval

from .core import Core
from .errors import JobStateError, MicrosoftApiError
from .journal import SERVICE, JobRecord, audit, event
from .models import Actor, EventKind, JobStatus, StepStatus
from .steps.base import now, parse_time
from .steps.client_secret import marker

CANCELLABLE = tuple(s.value for s in JobStatus if not s.terminal and s != JobStatus.CANCELLING)


class Cancellation:
    def __init__(self, core: Core) -> None:
        self.core = core

    async def request(self, job_id: str, actor: Actor) -> None:
        job = await self.core.load(job_id)
        if job.status == JobStatus.CANCELLING:
            return
        if job.status.terminal:
            raise JobStateError(f"This setup is already {job.status.value}.")
        try:
            await self.core.apply(JobChange(
                job_id, allow=CANCELLABLE, status=JobStatus.CANCELLING.value, cancel_timers=True,
                events=[event(EventKind.JOB_CANCELLING, message=f"Cancelled by {actor.name or actor.id}: nothing more is changed; "
                                                                "what this setup made is being removed.")],
                audit=[audit(actor, "cancel_requested", was=job.status.value)]))
        except JobStateChanged as exc:
            if exc.status in (JobStatus.CANCELLING.value, JobStatus.CANCELLED.value):
                return
            raise JobStateError("The setup changed while it was being cancelled.", action="Try Cancel again.") from None

    async def finish(self, job: JobRecord, fence: Fence) -> list[str]:
        """Under the job's lease: queue what the job made for removal and end it cancelled. What will be removed."""
        removals = await self._made_by(job)
        what = [_describe(r, job) for r in removals]
        steps = {r["name"]: {"status": StepStatus.SKIPPED.value, "message": "Cancelled"} for r in job.steps
                 if not StepStatus(r["status"]).finished}
        message = "Cancelled. " + ("Removing what this setup made: " + "; ".join(what) + "." if what else "This setup had made nothing to remove.")
        await self.core.apply(JobChange(job.id, fence=fence, allow=(JobStatus.CANCELLING.value,), status=JobStatus.CANCELLED.value,
                                        unseal=True, removals=removals, steps=steps, events=[event(EventKind.JOB_CANCELLED, message=message)],
                                        audit=[audit(SERVICE, "cancelled", removing=what)]))
        return what

    async def _made_by(self, job: JobRecord) -> list[NewRemoval]:
        data: dict[str, Any] = job.data
        object_id = data.get("app_object_id")
        if not object_id:
            return []
        object_id = str(object_id)
        if data.get("app_created_by_job"):
            return [NewRemoval(object_id, "application", object_id, "made by the cancelled setup")]
        removals = []
        keys = {str(k) for k in (data.get("secret_key_id"), (job.vault or {}).get("key_id")) if k}
        if data.get("secret_intent") or data.get("secret_attempts"):
            keys |= await self._marked_secrets(job, object_id)
        removals += [NewRemoval(object_id, "password", key, "made by the cancelled setup") for key in sorted(keys)]
        if data.get("federated_created_by_job") and data.get("federated_credential_id"):
            removals.append(NewRemoval(object_id, "federated", str(data["federated_credential_id"]), "made by the cancelled setup"))
        return removals

    async def _marked_secrets(self, job: JobRecord, object_id: str) -> set[str]:
        """Secrets this job added, also one whose text and key id a crash lost: they carry the job's marker. A new
        password can be missing from reads while it replicates, so wait out the settle time after the attempt first."""
        started = parse_time((job.data.get("secret_intent") or {}).get("at"))
        if started is not None:
            wait = self.core.settings.replication_settle.total_seconds() - (now() - started).total_seconds()
            if wait > 0:
                await self.core.sleep(wait)
        try:
            app = await self.core.graph.get_application(object_id, select=("id", "passwordCredentials"))
        except MicrosoftApiError:
            return set()
        mark = marker(job.id)
        return {str(c["keyId"]) for c in app.get("passwordCredentials") or [] if str(c.get("displayName") or "").startswith(mark)}


def _describe(removal: NewRemoval, job: JobRecord) -> str:
    if removal.kind == "application":
        return f"the app registration '{job.request.app_display_name}' (with its credentials)"
    if removal.kind == "password":
        return f"the client secret {removal.key_id[:8]}…"
    return "the federated credential"
