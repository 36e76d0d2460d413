"""Plans and approvals: make a plan, start the job an approval names, and retry a failed job — re-planned, and
shown for approval again if the tenant changed in a way the first approval did not cover."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any, Mapping

from store import JobChange, JobStateChanged, NewJob

from .agents import Agents
from .core import Core
from .dates import when
from .errors import FieldError, JobStateError, StalePlanError, ValidationFailed
from .journal import SERVICE, JobRecord, audit, event
from .models import Actor, Change, EventKind, JobStatus, Plan, SetupRequest, StepName, StepStatus, plan_from_dict
from .planner import gather_or_cancel, make_plan, policy_check, preflight_identity, raise_if, read_steps, uncovered
from .steps import STEPS, StepContext
from .validation import validate_agent_name, validate_request


def subject_of(environment_url: str, bot_id: str) -> str:
    """What a setup is for: one agent in one environment (day-two checks and history group by it)."""
    return f"{environment_url.rstrip('/')}|{bot_id.lower()}"


@dataclass(frozen=True)
class RetryOutcome:
    """A retry either started (`plan` is None) or needs a new approval of `plan`, which would make `changes`."""

    plan: Plan | None = None
    changes: tuple[tuple[StepName, Change], ...] = ()


class Approvals:
    def __init__(self, core: Core, agents: Agents) -> None:
        self.core = core
        self.agents = agents

    async def plan(self, request: SetupRequest, data: Mapping[str, Any] | None = None) -> tuple[Plan, StepContext]:
        """Validate, preflight and read the tenant in as few round trips as the data allows: the identity checks, the
        agent, the tenant's app-management policy and the organization at once; then every step's reads at once."""
        settings = self.core.settings
        errors = validate_request(request, settings.dataverse_urls)
        if errors:
            raise ValidationFailed(errors)
        client = self.core.dataverse[request.agent.environment_url.rstrip("/")]
        found = asyncio.ensure_future(self.agents.resolve(request))
        policy_read = asyncio.ensure_future(self.core.graph.get_app_management_policy())
        org_read = asyncio.ensure_future(client.organization_id())
        checks = await gather_or_cancel(
            preflight_identity(asyncio.ensure_future(self.core.tokens.roles(settings.graph_resource)), asyncio.ensure_future(client.who_am_i())),
            [found, policy_read, org_read], lambda c: raise_if([], c))
        (agent, bot), policy, org_id = found.result(), policy_read.result(), org_read.result()
        if agent is None:
            which = request.agent.schema_name or request.agent.bot_id
            raise ValidationFailed([FieldError("agent", f"No agent '{which}' in {client.environment_url}. Choose one from the list, or check "
                                                        "its schema name in Copilot Studio → Settings → Advanced → Metadata.")])
        policy_checks, policy_errors = policy_check(policy, request)
        checks.extend(policy_checks)
        raise_if(validate_agent_name(request, agent.name) + policy_errors, checks)
        ctx = self.core.context_for(request, agent, org_id, dict(data or {}))
        ctx.know("bot", bot)
        return make_plan(request, agent, await read_steps(ctx), checks), ctx

    async def previous_secured_access(self, subject: str) -> dict[str, str] | None:
        """The last confirmation of 'Require secured access' for this agent, from earlier setups."""
        for snap in reversed(await self.core.store.jobs.snapshots(await self.core.store.jobs.ids(subject=subject))):
            confirmed = snap.job["data"].get("secured_access_confirmed")
            if confirmed:
                return {"at": confirmed["at"], "at_text": when(confirmed["at"]), "by": confirmed["by"]}
        return None

    async def submit_approved(self, request: SetupRequest, plan_hash: str, requested_by: Actor, approved_by: Actor,
                              tags: Mapping[str, str] | None = None, *, job_id: str | None = None) -> str:
        """Start the job for the plan that was approved, identified by its hash: the tenant is read again, and a plan
        whose hash no longer matches is refused (StalePlanError). With `job_id` the call is idempotent: if that job
        exists (the same approval, delivered again), it is returned and nothing else happens."""
        job_id = job_id or str(uuid.uuid4())
        existing = await self.core.store.jobs.get(job_id)
        if existing is not None:
            if existing.job["plan_hash"] != plan_hash:
                raise JobStateError(f"Job {job_id} exists for another plan.", action="Type /setup copilot to start again.")
            return job_id
        current, read = await self.plan(request)
        if current.hash != plan_hash:
            raise StalePlanError(plan_hash, current.hash)
        subject = subject_of(current.agent.environment_url, current.agent.bot_id)
        data: dict[str, Any] = {"organization_id": read.organization_id}
        previous = await self.previous_secured_access(subject)
        if previous:
            data["previous_secured_access"] = previous
        created = await self.core.store.jobs.create(NewJob(
            id=job_id, status=JobStatus.QUEUED.value, plan_hash=current.hash, plan=current.to_dict(), requested_by=requested_by.to_dict(),
            approved_by=approved_by.to_dict(), tags=dict(tags or {}), data=data, subject=subject,
            steps=[(s.step.value, (StepStatus.SKIPPED if s.skip_reason else StepStatus.PENDING).value) for s in current.steps],
            events=[event(EventKind.JOB_STARTED, message=f"Approved by {approved_by.name or approved_by.id}")],
            audit=[audit(requested_by, "requested", agent=current.agent.to_dict(), request=current.request.to_dict()),
                   audit(approved_by, "approved", plan_hash=current.hash)]))
        if created:
            skipped = {s.step.value: {"message": f"Skipped: {s.skip_reason}"} for s in current.steps if s.skip_reason}
            if skipped:
                await self.core.store.jobs.apply(JobChange(job_id, steps=skipped))
            self.core.hand_over(job_id, read)
            self.core.wake()
        return job_id

    async def retry(self, job_id: str, actor: Actor) -> RetryOutcome:
        job = await self.core.load(job_id)
        if job.status != JobStatus.FAILED:
            raise JobStateError(f"Only a failed setup can be retried; this one is {job.status.value.replace('_', ' ')}.")
        now, _read = await self.plan(job.request, self._retry_data(job))
        changes = tuple(uncovered(plan_from_dict(job.plan), now))
        if changes:
            await self.core.apply(JobChange(job_id, allow=[JobStatus.FAILED.value], version=job.version, events=[event(
                EventKind.PLAN_CHANGED, message="The tenant changed since this setup was approved; the new plan needs approval.",
                data={"plan_hash": now.hash})], audit=[audit(actor, "retry_needs_approval", plan_hash=now.hash,
                                                              changes=[[s.value, c.field] for s, c in changes])]))
            return RetryOutcome(now, changes)
        await self._requeue(job, actor, "retried")
        return RetryOutcome()

    async def retry_approved(self, job_id: str, plan_hash: str, approver: Actor) -> None:
        """Apply the re-made plan of a failed job, as approved (identified by its hash)."""
        job = await self.core.load(job_id)
        if job.status != JobStatus.FAILED:
            raise JobStateError(f"Only a failed setup can be retried; this one is {job.status.value.replace('_', ' ')}.")
        now, _read = await self.plan(job.request, self._retry_data(job))
        if now.hash != plan_hash:
            raise StalePlanError(plan_hash, now.hash)
        await self._requeue(job, approver, "retry_approved", plan=now)

    @staticmethod
    def _retry_data(job: JobRecord) -> dict[str, Any]:
        data = dict(job.data)
        if data.get("secret_expired"):
            data.update(force_new_secret=True, secret_expired=False)
        return data

    async def _requeue(self, job: JobRecord, actor: Actor, action: str, *, plan: Plan | None = None) -> None:
        steps = {r["name"]: {"status": StepStatus.PENDING.value, "message": "Retrying"} for r in job.steps if r["status"] == StepStatus.FAILED.value}
        if plan is not None:  # the approved new plan changes steps that had finished: they run again
            again = {s.step.value for s in plan.steps if s.action.value in ("create", "update") and not s.skip_reason and not s.step.guided}
            steps |= {r["name"]: {"status": StepStatus.PENDING.value, "message": "Applying the newly approved plan"} for r in job.steps
                      if r["name"] in again}
        try:
            await self.core.apply(JobChange(
                job.id, allow=[JobStatus.FAILED.value], version=job.version, status=JobStatus.QUEUED.value, data=self._retry_data(job),
                steps=steps, plan=plan.to_dict() if plan else None, plan_hash=plan.hash if plan else None,
                events=[event(EventKind.JOB_STARTED, message=f"Retried by {actor.name or actor.id}")],
                audit=[audit(actor, action, **({"plan_hash": plan.hash} if plan else {}))]))
        except JobStateChanged:
            raise JobStateError("The setup changed while the retry was prepared.", action="Look at the progress card, then try again.") from None

    async def record_refusal(self, actor: Actor, action: str, *, job_id: str | None, why: str, **detail: Any) -> None:
        await self.core.store.jobs.record_audit(job_id, audit(actor, "refused", attempted=action, why=why, **detail))


__all__ = ["Approvals", "RetryOutcome", "subject_of", "SERVICE", "STEPS"]
