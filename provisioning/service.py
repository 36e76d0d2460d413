"""The provisioning service: the one entry point front ends use (see docs/ARCHITECTURE.md).

It composes the parts, each in its own module: agents (listing), approvals (plans, jobs, retries), guided (the
steps a person does), handoff (the client secret), cancellation, sweeper (expiry and credential removals) and the
worker. It speaks to the store in domain operations only; the store is the one place that knows the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import replace
from typing import Any, Awaitable, Callable, Mapping

from store import Fence, JobChange, JobStateChanged, Store, open_database

from .agents import Agents
from .approvals import Approvals, RetryOutcome
from .cancellation import Cancellation
from .config import Settings
from .core import Core
from .daytwo import DayTwo
from .errors import JobStateError, MicrosoftApiError, ProvisioningError
from .guided import Guided
from .handoff import Handoff, RevealedSecret
from .http import RetryPolicy
from .journal import ACTIVE, SERVICE, JobRecord, audit, event, event_of, view
from .models import Actor, AgentSummary, Event, EventKind, JobStatus, JobView, Plan, SetupRequest, StepName, StepStatus
from .setups import SetupView
from .steps import Step, StepContext
from .sweeper import Sweeper, describe
from .vault import Vault, load_keys
from .watch import Watch
from .worker import COMPLETABLE, RUNNABLE, Worker

log = logging.getLogger(__name__)


class ProvisioningService:
    def __init__(
        self,
        settings: Settings,
        *,
        run_worker: bool = True,
        retry: RetryPolicy | None = None,
        worker_poll_interval: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        store: Store | None = None,
        instance: str = "",
    ) -> None:
        """`instance`: this process's stable identity (host and port, or the platform's instance id). A process restarted
        under the same identity resumes its own leases at once instead of waiting for them to expire."""
        self.settings = settings
        self._own_store = store is None
        self.store = store or Store(open_database(settings.database))
        self.core = Core(settings, self.store, retry=retry or RetryPolicy(), sleep=sleep)
        self.agents = Agents(self.core)
        self.approvals = Approvals(self.core, self.agents)
        self.guided = Guided(self.core)
        self.handoff = Handoff(self.core)
        self.cancellation = Cancellation(self.core)
        self.sweeper = Sweeper(self.core, self.handoff)
        self.watch = Watch(self.core, self.approvals)
        self.day_two = DayTwo(self.core, self.approvals, self.watch)
        self._run_worker = run_worker
        self._poll = worker_poll_interval
        self.worker: Worker | None = None
        self.instance = instance

    # ---- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._own_store:
            await self.store.db.open()
        keys = await asyncio.to_thread(load_keys, self.settings.secret_encryption_keys, self.settings.secret_key_file)
        await self.core.start(Vault(keys))
        self.settings = self.core.settings
        if self._run_worker:
            self.worker = Worker(self, poll_interval=self._poll, owner=f"worker@{self.instance}" if self.instance else None)
            self.core.wake = self.worker.wake.set
            self.worker.start()

    async def close(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        await self.core.close()
        if self._own_store:
            await self.store.db.close()

    async def ready(self) -> bool:
        try:
            ok = await self.store.db.ping()
        except Exception:  # noqa: BLE001 - readiness answers, it does not raise
            return False
        return ok and (self.worker is None or self.worker.alive)

    @property
    def sandbox_available(self) -> bool:
        return self.core.operator is not None

    @property
    def tokens(self) -> Any:
        return self.core.tokens

    # ---- agents and plans -------------------------------------------------------------------------------------

    async def list_agents(self) -> list[AgentSummary]:
        return await self.agents.listing()

    def forget_agents(self) -> None:
        self.agents.forget()

    async def plan(self, request: SetupRequest) -> Plan:
        return (await self.approvals.plan(request))[0]

    async def submit(self, plan: Plan, requested_by: Actor, approved_by: Actor, tags: Mapping[str, str] | None = None) -> JobView:
        return await self.submit_approved(plan.request, plan.hash, requested_by, approved_by, tags)

    async def submit_approved(self, request: SetupRequest, plan_hash: str, requested_by: Actor, approved_by: Actor,
                              tags: Mapping[str, str] | None = None, *, job_id: str | None = None) -> JobView:
        """Apply the plan that was approved (identified by its hash); idempotent when the front end names the job."""
        return await self.get_job(await self.approvals.submit_approved(request, plan_hash, requested_by, approved_by, tags, job_id=job_id))

    async def retry(self, job_id: str, actor: Actor) -> RetryOutcome:
        return await self.approvals.retry(job_id, actor)

    async def retry_approved(self, job_id: str, plan_hash: str, approver: Actor) -> JobView:
        await self.approvals.retry_approved(job_id, plan_hash, approver)
        return await self.get_job(job_id)

    async def record_refusal(self, actor: Actor, action: str, *, job_id: str | None, why: str, **detail: Any) -> None:
        """An audit entry (who, what, which job or card, why) for a refused action; the front end logs it too."""
        await self.approvals.record_refusal(actor, action, job_id=job_id, why=why, **detail)

    # ---- guided steps, the secret, cancel ------------------------------------------------------------------------

    async def confirm_step(self, job_id: str, step: StepName, actor: Actor, *, override: bool = False, keep_previous: bool = False) -> JobView:
        await self.guided.confirm(job_id, step, actor, override=override, keep_previous=keep_previous)
        self.forget_agents()
        return await self.get_job(job_id)

    async def federated_values(self, job_id: str, actor: Actor, *, issuer: str, subject: str) -> JobView:
        await self.guided.federated_values(job_id, actor, issuer, subject)
        return await self.get_job(job_id)

    async def perform_in_sandbox(self, job_id: str, step: StepName, actor: Actor) -> JobView:
        await self.guided.in_sandbox(job_id, step, actor, use_secret=self.handoff.use)
        return await self.get_job(job_id)

    async def reveal_secret(self, job_id: str, actor: Actor) -> RevealedSecret:
        return await self.handoff.reveal(job_id, actor)

    async def secret_copied(self, job_id: str, actor: Actor) -> JobView:
        await self.handoff.copied(job_id, actor)
        return await self.get_job(job_id)

    async def take_secret(self, job_id: str, actor: Actor) -> str:
        """Show and hand over at once (the command line writes it to a file the person then owns)."""
        secret = await self.handoff.reveal(job_id, actor)
        await self.handoff.copied(job_id, actor)
        return secret.text

    async def use_secret(self, job_id: str, actor: Actor, use: Callable[[str], Awaitable[None]]) -> None:
        await self.handoff.use(job_id, actor, use)

    async def renew_secret(self, job_id: str, actor: Actor) -> JobView:
        await self.handoff.renew(job_id, actor)
        await self.sweeper.remove_for(job_id)
        return await self.get_job(job_id)

    async def cancel(self, job_id: str, actor: Actor) -> JobView:
        await self.cancellation.request(job_id, actor)
        if self.worker is not None:
            self.worker.interrupt(job_id)
            self.worker.wake.set()
        return await self.get_job(job_id)

    async def expire_secrets(self) -> None:
        await self.sweeper.sweep()

    # ---- day two: the setups, their checks and changes -----------------------------------------------------------

    async def setups(self, conversation: str | None = None) -> list[SetupView]:
        return await self.day_two.setups(conversation)

    async def find_setup(self, text: str) -> SetupView:
        return await self.day_two.find(text)

    async def check_setup(self, subject: str) -> SetupView:
        """Check one setup now (the watch does this every WATCH_INTERVAL); findings not reported yet become events."""
        await self.watch.reconcile()
        await self.watch.check(subject)
        return await self.day_two.setup(subject)

    async def check_all(self) -> list[SetupView]:
        await self.watch.reconcile()
        for setup in await self.day_two.setups():
            if setup.status == "active":
                with contextlib.suppress(JobStateError):  # a change in progress: checked when it ends
                    await self.watch.check(setup.subject)
        return await self.day_two.setups()

    async def propose(self, subject: str, change: str) -> Plan:
        """The plan of a day-two change (rotate, federated, repair, remove) to show for approval; submit it as a setup's."""
        return await self.day_two.propose(subject, change)

    async def keep_change(self, subject: str, actor: Actor) -> SetupView:
        return await self.day_two.keep_change(subject, actor)

    # ---- what the worker writes --------------------------------------------------------------------------------

    async def step_done(self, job_id: str, fence: Fence, name: str, outputs: Mapping[str, str], message: str) -> None:
        await self.core.apply(JobChange(job_id, fence=fence, allow=ACTIVE,
                                        steps={name: {"status": StepStatus.DONE.value, "message": message, "outputs": dict(outputs), "verification": ""}},
                                        events=[event(EventKind.STEP_SUCCEEDED, step=name, message=message, data=dict(outputs))]))
        self.forget_agents()  # a step may have changed the agent (authentication, publish time)

    async def step_failed(self, job_id: str, fence: Fence, name: str, exc: ProvisioningError) -> None:
        text = exc.user_message()
        detail: dict[str, Any] = {"error": type(exc).__name__}
        if isinstance(exc, MicrosoftApiError):
            detail |= {"status": exc.status, "code": exc.code, "request_id": exc.request_id, "service": exc.service}
        await self.core.apply(JobChange(job_id, fence=fence, allow=ACTIVE, status=JobStatus.FAILED.value,
                                        steps={name: {"status": StepStatus.FAILED.value, "message": text}},
                                        events=[event(EventKind.STEP_FAILED, step=name, message=text, data=detail)],
                                        audit=[audit(SERVICE, "step_failed", step=name, **detail)]))

    async def wait_for_operator(self, job_id: str, fence: Fence, step: Step, ctx: StepContext) -> None:
        instructions = step.instructions(ctx)
        await self.core.apply(JobChange(
            job_id, fence=fence, allow=ACTIVE, status=JobStatus.WAITING_FOR_OPERATOR.value,
            steps={step.name.value: {"status": StepStatus.WAITING_FOR_OPERATOR.value, "message": instructions.title,
                                     "instructions": instructions.to_dict()}},
            events=[event(EventKind.WAITING_FOR_OPERATOR, step=step.name, message=instructions.title)]))

    async def finish_if_done(self, job_id: str, *, fence: Fence | None = None) -> None:
        """Complete a job whose steps are all finished (or mark it propagating while the reminder is pending)."""
        job = await self.core.load(job_id)
        if job.status.value not in COMPLETABLE:
            return
        statuses = [StepStatus(r["status"]) for r in job.steps]
        change = JobChange(job_id, fence=fence, allow=COMPLETABLE, version=job.version)
        if all(s.finished for s in statuses):
            change.status = JobStatus.COMPLETED.value
            change.events = [event(EventKind.JOB_COMPLETED, message="Every step is done.")]
            change.audit = [audit(SERVICE, "completed")]
        elif all(s.finished or s == StepStatus.PROPAGATING for s in statuses):
            change.status = JobStatus.PROPAGATING.value
        else:
            return
        try:
            await self.core.apply(change)
        except JobStateChanged:
            return  # someone else moved it on (the timer, or another instance): they decide

    # ---- views and events -------------------------------------------------------------------------------------

    async def load(self, job_id: str) -> JobRecord:
        return await self.core.load(job_id)

    async def get_job(self, job_id: str) -> JobView:
        job = await self.core.load(job_id)
        return await self._view(job)

    async def _view(self, job: JobRecord) -> JobView:
        base = view(job)
        removals = await self.store.removals.for_job(job.id)
        if not removals:
            return base
        return replace(base, cleanup=tuple((describe(r), "done" if r["done_at"] else ("retrying" if r["attempts"] else "pending")) for r in removals))

    async def list_jobs(self, tag: tuple[str, str] | None = None) -> list[JobView]:
        snaps = await self.store.jobs.snapshots(await self.store.jobs.ids())
        jobs = [JobRecord.of(s) for s in snaps]
        return [await self._view(j) for j in jobs if tag is None or j.tags.get(tag[0]) == tag[1]]

    async def events_after(self, seq: int, limit: int = 100) -> list[Event]:
        return [event_of(r) for r in await self.store.jobs.events_after(seq, limit)]

    async def last_seq(self) -> int:
        return await self.store.jobs.last_seq()

    async def wait_for_events(self, seq: int, timeout: float) -> list[Event]:
        seen = self.store.db.changes
        events = await self.events_after(seq)
        if events:
            return events
        await self.store.db.wait_for_change(seen, timeout)
        return await self.events_after(seq)

    async def busy(self, within: float = 60.0) -> bool:
        """A job is queued, running or being cancelled, or a reminder falls due within `within` seconds."""
        return bool(await self.store.jobs.ids(statuses=RUNNABLE)) or await self.store.jobs.pending_timers(time.time() + within) > 0

    async def audit_log(self, job_id: str) -> list[dict[str, Any]]:
        return [{"at": r["at"], "actor": r["actor"], "action": r["action"], "detail": r["detail"]} for r in await self.store.jobs.audit_log(job_id)]


__all__ = ["ProvisioningService", "RetryOutcome", "RevealedSecret", "SetupView"]
