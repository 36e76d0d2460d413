"""The client secret's hand-off to the one person who asked for the setup.

It is shown to the requester only, as often as they ask, until they say they copied it ("I copied it") or the
hand-off time (SECRET_HANDOFF_TTL) passes; then the stored copy is destroyed. A secret nobody took in time is
removed from the app registration in the same transaction that destroys it (a durable removal, retried until Graph
confirms). A secret that never reached Copilot Studio can be replaced: the old one is removed, a new one made.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Awaitable, Callable

from store import JobChange, JobStateChanged, NewRemoval

from .core import Core
from .dates import duration, when
from .errors import JobStateError, NotAuthorizedError, SecretUnavailableError
from .journal import SERVICE, JobRecord, audit, event, ts
from .models import Actor, EventKind, JobStatus, StepName, StepStatus

OPEN = tuple(s.value for s in JobStatus if not s.terminal)


@dataclass(frozen=True)
class RevealedSecret:
    text: str
    client_id: str
    secret_expires: str  # when the secret itself expires (Graph's endDateTime)
    handoff_ends: datetime | None  # when the stored copy is destroyed if not confirmed copied


class Handoff:
    def __init__(self, core: Core) -> None:
        self.core = core

    async def _requester(self, job_id: str, actor: Actor, what: str) -> JobRecord:
        job = await self.core.load(job_id)
        if actor.id != job.requested_by.id:
            raise NotAuthorizedError(f"Only the person who requested this setup can {what} its client secret.",
                                     action=f"Ask {job.requested_by.name or 'the requester'} to do it.")
        return job

    @staticmethod
    def _gone(job: JobRecord) -> SecretUnavailableError:
        if job.data.get("secret_expired"):
            return SecretUnavailableError("The client secret was not handed over in time, so it was removed from the app registration.",
                                          action="Select Retry on the progress card to make a new one.")
        return SecretUnavailableError("The client secret is not stored any more: it was handed over (you confirmed you copied it).",
                                      action="If it never reached Copilot Studio, select 'Make a new client secret' on the step's card.")

    async def reveal(self, job_id: str, actor: Actor) -> RevealedSecret:
        job = await self._requester(job_id, actor, "see")
        row = await self.core.store.vault.get(job_id)
        if row is None:
            raise self._gone(job)
        if row["expires_at"] <= time.time():
            raise SecretUnavailableError("The time to hand over this client secret has passed; it is being removed from the app registration.",
                                         action="Select Retry on the progress card once the setup shows the step failed, to make a new one.")
        secret = self.core.vault.open(row["ciphertext"])
        await self.core.store.vault.mark_shown(job_id, str(row["key_id"]))
        await self.core.store.jobs.record_audit(job_id, audit(actor, "secret_shown", key_id=row["key_id"]))
        return RevealedSecret(secret, str(job.data.get("app_id", "")), str(job.data.get("secret_end") or ""), ts(row["expires_at"]))

    async def copied(self, job_id: str, actor: Actor) -> None:
        """The requester has the secret: destroy the stored copy."""
        job = await self._requester(job_id, actor, "confirm")
        if job.vault is None:
            raise self._gone(job)
        await self._destroy(job, actor, "secret_copied", "The client secret was handed over.")

    async def use(self, job_id: str, actor: Actor, use: Callable[[str], Awaitable[None]]) -> None:
        """Hand the secret to `use` (the sandbox's emulated Copilot Studio) and destroy the stored copy only after
        `use` succeeded: a failure in between leaves it in the vault, so the step can still be done."""
        job = await self._requester(job_id, actor, "use")
        row = await self.core.store.vault.get(job_id)
        if row is None:
            raise self._gone(job)
        secret = self.core.vault.open(row["ciphertext"])
        try:
            await use(secret)
        finally:
            del secret
        await self._destroy(await self.core.load(job_id), actor, "secret_entered", "The client secret was entered in Copilot Studio.")

    async def _destroy(self, job: JobRecord, actor: Actor, action: str, message: str) -> None:
        assert job.vault is not None
        try:
            await self.core.apply(JobChange(job.id, allow=OPEN, sealed_key=str(job.vault["key_id"]), unseal=True,
                                            events=[event(EventKind.SECRET_TAKEN, step=StepName.COPILOT_AUTHENTICATION, message=message)],
                                            audit=[audit(actor, action, key_id=job.vault["key_id"])]))
        except JobStateChanged:
            raise self._gone(await self.core.load(job.id)) from None

    async def renew(self, job_id: str, actor: Actor) -> None:
        """The secret never made it into Copilot Studio: remove it from the app registration and make a new one."""
        job = await self.core.load(job_id)
        if actor.id not in job.actors:
            raise NotAuthorizedError("Only the requester or the approver of this setup can make a new client secret.",
                                     action=f"Ask {job.requested_by.name or 'the requester'}.")
        if job.step_status(StepName.COPILOT_AUTHENTICATION) != StepStatus.WAITING_FOR_OPERATOR:
            raise JobStateError("A new client secret is only made while the setup waits for you to enter one in Copilot Studio.",
                                action="Look at the progress card to see where the setup is.")
        if job.vault is not None:
            raise JobStateError("The client secret has not been handed over yet.", action="Select 'Show client secret' on the step's card.")
        old, object_id = job.data.get("secret_key_id"), job.data.get("app_object_id")
        data = dict(job.data) | {"force_new_secret": True, "secret_key_id": None}
        removals = [NewRemoval(str(object_id), "password", str(old), "replaced by a new client secret")] if old and object_id else []
        try:
            await self.core.apply(JobChange(
                job_id, allow=(JobStatus.WAITING_FOR_OPERATOR.value,), version=job.version, status=JobStatus.QUEUED.value, data=data,
                removals=removals,
                steps={StepName.CLIENT_SECRET.value: {"status": StepStatus.PENDING.value, "message": "Making a new client secret"},
                       StepName.COPILOT_AUTHENTICATION.value: {"status": StepStatus.PENDING.value, "message": "", "verification": ""}},
                events=[event(EventKind.JOB_STARTED, message=f"New client secret requested by {actor.name or actor.id}")],
                audit=[audit(actor, "secret_renewed", removed_key_id=old)]))
        except JobStateChanged:
            raise JobStateError("The setup changed meanwhile.", action="Look at the newest cards for this setup, then try again.") from None
        self.core.wake()

    async def expire(self, job_id: str, key_id: str) -> None:
        """Nobody took the secret in time: destroy it and remove it from the app registration (one transaction, with a
        durable removal), and fail the step if the setup still needed it (Retry makes a new one)."""
        job = await self.core.load(job_id)
        ttl = duration(self.core.settings.secret_handoff_ttl.total_seconds())
        message = (f"The client secret was not handed over within {ttl}, so it was removed from the app registration "
                   f"({when(time.time())}). Retry to make a new one.")
        auth_open = not (job.step_status(StepName.COPILOT_AUTHENTICATION) or StepStatus.DONE).finished
        change = JobChange(job_id, sealed_key=key_id, unseal=True, version=job.version, data=dict(job.data) | {"secret_expired": True},
                           events=[event(EventKind.SECRET_EXPIRED, step=StepName.CLIENT_SECRET, message=message)],
                           audit=[audit(SERVICE, "secret_expired", key_id=key_id)])
        if job.data.get("app_object_id"):
            change.removals = [NewRemoval(str(job.data["app_object_id"]), "password", key_id, "not handed over in time")]
        if auth_open and not job.status.terminal and job.status != JobStatus.CANCELLING:
            change.status = JobStatus.FAILED.value
            change.steps = {StepName.CLIENT_SECRET.value: {"status": StepStatus.FAILED.value, "message": message}}
            if job.step_status(StepName.COPILOT_AUTHENTICATION) == StepStatus.WAITING_FOR_OPERATOR:
                change.steps[StepName.COPILOT_AUTHENTICATION.value] = {"status": StepStatus.PENDING.value, "instructions": None}
        try:
            await self.core.apply(change)
        except JobStateChanged:
            return  # taken, or changed meanwhile: the next sweep decides again on what it reads then
