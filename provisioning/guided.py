"""The steps a person does (Microsoft offers no API for them): Done (verified through Dataverse), Continue anyway
(recorded), the federated credential's two values, keeping an earlier secured-access confirmation, and doing a
step in the sandbox's emulated Copilot Studio. Every change is made against the version of the job that was read,
so two clicks at once (in one instance or two) cannot both take effect. A change that loses to something unrelated
(the propagation reminder firing meanwhile, say) is made again on the job as it is now, as long as the step still
waits for the person; only a change to the step itself (another click, a cancel) is the person's to look at."""

from __future__ import annotations

import time
from typing import Any, Callable

from store import JobChange, JobStateChanged

from .core import Core
from .dates import when
from .errors import JobStateError, ValidationFailed
from .journal import JobRecord, audit, event
from .models import CLIENT_SECRET, Actor, EventKind, JobStatus, StepName, StepStatus
from .steps import STEP_BY_NAME
from .steps.federated_credential import field_errors

WAITING = (JobStatus.WAITING_FOR_OPERATOR.value,)
ATTEMPTS = 3  # a change that loses to an unrelated one is made again on the job as it is now, this many times in all


class Guided:
    def __init__(self, core: Core) -> None:
        self.core = core

    async def _waiting(self, job_id: str, step: StepName) -> tuple[JobRecord, dict[str, Any]]:
        job = await self.core.load(job_id)
        row = job.step_row(step)
        if row is None:
            raise JobStateError(f"Job {job_id} has no step {step.value}.")
        status = StepStatus(row["status"])
        if status != StepStatus.WAITING_FOR_OPERATOR or job.status != JobStatus.WAITING_FOR_OPERATOR:
            where = status.value.replace("_", " ") if status != StepStatus.WAITING_FOR_OPERATOR else job.status.value.replace("_", " ")
            raise JobStateError(f"'{step.label}' is not waiting for you: it is {where}.", action="Look at the progress card to see where the setup is.")
        return job, row

    async def _apply(self, job: JobRecord, step: StepName, change: Callable[[JobRecord], JobChange]) -> None:
        """Apply `change(job)`; when the job changed meanwhile and `step` still waits for the person, apply it again
        to the job as it is now (`_waiting` says what happened otherwise)."""
        for attempt in range(ATTEMPTS):
            try:
                await self.core.apply(change(job))
                return
            except JobStateChanged:
                if attempt == ATTEMPTS - 1:
                    break
                job, _row = await self._waiting(job.id, step)
        raise JobStateError("The setup changed while this was being done (another click, or a cancel).",
                            action="Look at the newest cards for this setup, then try again.")

    async def confirm(self, job_id: str, step: StepName, actor: Actor, *, override: bool = False, keep_previous: bool = False) -> None:
        job, row = await self._waiting(job_id, step)
        if step == StepName.FEDERATED_CREDENTIAL:
            raise JobStateError("This step needs the two values Copilot Studio shows.", action="Paste them into the card's fields, then select 'Add the federated credential'.")
        if override:
            if not row["verification"]:
                raise JobStateError("'Continue anyway' is only offered after a check has failed.", action="Select Done first.")
            await self._finish(job, step, actor, StepStatus.OVERRIDDEN, f"Continued without verification by {actor.name or actor.id}: {row['verification']}", "overridden")
            return
        if keep_previous:
            previous = job.data.get("previous_secured_access")
            if step != StepName.SECURED_ACCESS or not previous:
                raise JobStateError("There is no earlier confirmation to keep for this step.", action="Do the step, then select 'Done, check it'.")
            message = f"Kept the earlier confirmation by {previous['by']} ({previous['at_text']}); no new propagation window."
            kept = {"secured_access_confirmed": {"at": previous["at"], "by": previous["by"], "kept_by": actor.name or actor.id}}
            await self._finish(job, step, actor, StepStatus.DONE, message, "kept_confirmation", data=lambda j: dict(j.data) | kept)
            return
        ctx = self.core.context(job, None, allow=WAITING)
        ctx.secret_waiting = job.vault is not None
        check = await STEP_BY_NAME[step.value].verify(ctx)
        self.core.hand_over(job_id, ctx)
        if not check.ok:
            await self._apply(job, step, lambda j: JobChange(
                j.id, allow=WAITING, version=j.version, steps={step.value: {"verification": check.text}},
                events=[event(EventKind.VERIFICATION_FAILED, step=step, message=check.text)],
                audit=[audit(actor, "confirmed_unverified", step=step.value, found=check.text)]))
            return
        if step == StepName.SECURED_ACCESS:
            await self._start_propagation(job, actor)
        else:
            await self._finish(job, step, actor, StepStatus.DONE, check.text, "confirmed")

    async def _finish(self, job: JobRecord, step: StepName, actor: Actor, status: StepStatus, message: str, action: str,
                      *, data: Callable[[JobRecord], dict[str, Any]] | None = None) -> None:
        kind = EventKind.STEP_OVERRIDDEN if status == StepStatus.OVERRIDDEN else EventKind.STEP_SUCCEEDED
        await self._apply(job, step, lambda j: JobChange(
            j.id, allow=WAITING, version=j.version, status=JobStatus.RUNNING.value, data=data(j) if data else None,
            steps={step.value: {"status": status.value, "message": message}},
            events=[event(kind, step=step, message=message, data={"by": actor.to_dict()})],
            audit=[audit(actor, action, step=step.value, result=message)]))
        self.core.wake()

    async def _start_propagation(self, job: JobRecord, actor: Actor) -> None:
        now = time.time()
        due = now + self.core.settings.propagation_delay.total_seconds()
        message = f"Require secured access confirmed; it takes effect by {when(due)}. Until then the old setting applies."
        confirmed = {"secured_access_confirmed": {"at": now, "by": actor.name or actor.id}}
        await self._apply(job, StepName.SECURED_ACCESS, lambda j: JobChange(
            j.id, allow=WAITING, version=j.version, status=JobStatus.RUNNING.value, data=dict(j.data) | confirmed,
            steps={StepName.SECURED_ACCESS.value: {"status": StepStatus.PROPAGATING.value, "message": message, "due_at": due}},
            timers=[("propagation_reminder", due)],
            events=[event(EventKind.PROPAGATION_STARTED, step=StepName.SECURED_ACCESS, message=message, data={"due_at": due, "by": actor.to_dict()})],
            audit=[audit(actor, "confirmed", step=StepName.SECURED_ACCESS.value, due_at=due)]))
        self.core.wake()

    async def federated_values(self, job_id: str, actor: Actor, issuer: str, subject: str) -> None:
        """The two values Copilot Studio shows, as the person pasted them; the job then adds the credential."""
        issuer, subject = issuer.strip(), subject.strip()
        errors = field_errors(issuer, subject)
        if errors:
            raise ValidationFailed(errors)
        job, _row = await self._waiting(job_id, StepName.FEDERATED_CREDENTIAL)
        values = {"federated_values": {"issuer": issuer, "subject": subject}}
        await self._apply(job, StepName.FEDERATED_CREDENTIAL, lambda j: JobChange(
            j.id, allow=WAITING, version=j.version, status=JobStatus.QUEUED.value, data=dict(j.data) | values,
            steps={StepName.FEDERATED_CREDENTIAL.value: {"status": StepStatus.PENDING.value, "message": "Adding the federated credential",
                                                         "verification": ""}},
            events=[event(EventKind.STEP_STARTED, step=StepName.FEDERATED_CREDENTIAL, message="Adding the federated credential")],
            audit=[audit(actor, "federated_values_entered", issuer=issuer, subject=subject)]))
        self.core.wake()

    async def in_sandbox(self, job_id: str, step: StepName, actor: Actor, *, use_secret: Any) -> None:
        """Do a guided step in the sandbox's emulated Copilot Studio, as the person would, then confirm it."""
        operator = self.core.operator
        if operator is None:
            raise JobStateError("There is no sandbox: this bot talks to a real tenant.", action="Do the step in Copilot Studio, then select 'Done, check it'.")
        job, _row = await self._waiting(job_id, step)
        bot_id, client_id = job.agent.bot_id, str(job.data.get("app_id", ""))
        if step == StepName.FEDERATED_CREDENTIAL:
            issuer, subject = await operator.federated_authentication(bot_id, client_id=client_id, tenant_id=self.core.settings.tenant_id)
            await self.federated_values(job_id, actor, issuer, subject)
            return
        if step == StepName.COPILOT_AUTHENTICATION:
            if job.request.credential == CLIENT_SECRET:
                if job.vault is None:
                    raise JobStateError("The client secret was already handed over, so the sandbox cannot enter it for you.",
                                        action="Enter it yourself in the sandbox's emulated Copilot Studio, then select 'Done, check it'; or select 'Make a new client secret'.")

                async def enter(secret: str) -> None:
                    await operator.manual_authentication(bot_id, client_id=client_id, client_secret=secret)

                await use_secret(job_id, actor, enter)
            else:
                await operator.save_federated_authentication(bot_id)
        elif step == StepName.SECURED_ACCESS:
            await operator.enable_secured_access(bot_id)
        elif step == StepName.CUSTOMER_SERVICE_CONNECTION:
            await operator.connect_customer_service(bot_id)
        elif step == StepName.AGENT_AUTHENTICATION_OFF:
            await operator.switch_authentication(bot_id, 1)
        elif step == StepName.CUSTOMER_SERVICE_DISCONNECT:
            await operator.disconnect_customer_service(bot_id)
        await self.confirm(job_id, step, actor)
