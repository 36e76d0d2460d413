"""Runs jobs: takes a job's lease, resumes it from its last durable step, fires due timers (the propagation
reminder, together with completing the job), finishes cancels, and — one instance at a time — sweeps expired
secrets and pending credential removals.

Every write a run makes carries the lease's fence, and every Microsoft write it starts is preceded by a check of
the job's status and the lease (provisioning/http.py `write_guard`). A run whose lease was taken over, or whose
job was cancelled, stops without another write.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from store import IDLE_POLL, Fence, JobChange, JobStateChanged, LeaseLost, StoreError

from .errors import JobCancelled, ProvisioningError
from .http import write_guard
from .journal import ACTIVE, SERVICE, JobRecord, audit, event
from .models import EventKind, JobStatus, StepAction, StepName, StepStatus
from .steps import STEP_BY_NAME, Step, StepContext

if TYPE_CHECKING:
    from .service import ProvisioningService

log = logging.getLogger(__name__)
SWEEP_CADENCE = 5.0  # how often an instance sweeps expired hand-offs and due credential removals (at most)
WATCH_CADENCE = 5.0  # how often an instance looks for due day-two checks (each setup is checked every WATCH_INTERVAL)
RUNNABLE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value, JobStatus.CANCELLING.value)
COMPLETABLE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value, JobStatus.WAITING_FOR_OPERATOR.value, JobStatus.PROPAGATING.value)


class Worker:
    def __init__(self, service: "ProvisioningService", *, poll_interval: float = 1.0, owner: str | None = None) -> None:
        self.service = service
        self.core = service.core
        self.store = service.core.store
        self.owner = owner or f"worker-{uuid.uuid4().hex[:12]}"
        self.poll_interval = poll_interval
        self.lease_ttl = service.core.settings.lease_ttl.total_seconds()
        self.wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None
        self._sweep: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._next_watch = 0.0
        self._next_sweep = 0.0
        self._idle = False  # the last tick found no job to run or wait for (only a change or a due time wakes it then)

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="provisioning-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        side = [t for t in (self._sweep, self._watch) if t is not None]
        for task in [*self._running.values(), *side]:
            task.cancel()
        await asyncio.gather(*self._running.values(), *side, return_exceptions=True)
        self._running.clear()

    def interrupt(self, job_id: str) -> None:
        """Stop this instance's run of a job now (it was cancelled); the lease is released as the run ends."""
        task = self._running.get(job_id)
        if task is not None and not task.done():
            task.cancel()

    async def _loop(self) -> None:
        while True:
            seen = self.store.db.changes
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must survive anything one tick hits
                log.exception("worker tick failed; continuing")
            self.wake.clear()
            try:
                pause = await self._pause()
            except Exception:  # noqa: BLE001 - the database may be away: poll as usual meanwhile
                pause = self.poll_interval
            changed = asyncio.ensure_future(self.store.db.wait_for_change(seen, pause))
            woken = asyncio.ensure_future(self.wake.wait())
            try:
                await asyncio.wait({changed, woken}, timeout=pause, return_when=asyncio.FIRST_COMPLETED)
            finally:  # also when the worker is stopped while waiting: no waiter outlives the loop (a lock held inside)
                for waiter in (changed, woken):
                    waiter.cancel()
                await asyncio.gather(changed, woken, return_exceptions=True)

    async def _pause(self) -> float:
        """How long to wait for a change before the next tick. The usual poll interval, unless nothing is to be run
        and every change is announced: then until the next timer, sweep or watch pass is due (at most IDLE_POLL), so
        an idle instance does not query the database every second. A job another instance holds keeps the usual pace
        (its lease may expire: the fail-over must not wait)."""
        if not (self._idle and self.store.db.announces_changes):
            return self.poll_interval
        now = time.monotonic()
        due = [IDLE_POLL, self._next_sweep - now, self._next_watch - now]
        timer = await self.store.jobs.next_timer_at()
        if timer is not None:
            due.append(timer - time.time())
        return max(self.poll_interval, min(due))

    async def tick(self) -> None:
        for job_id in await self.store.jobs.finished_but_open(COMPLETABLE):
            await self.service.finish_if_done(job_id)
        await self.fire_timers()
        if (self._sweep is None or self._sweep.done()) and time.monotonic() >= self._next_sweep:
            # on its own cadence, not on every change the tick wakes for (each attempt is a lease write)
            self._next_sweep = time.monotonic() + min(SWEEP_CADENCE, self.lease_ttl)
            if await self.store.locks.acquire("sweeper", self.owner, self.lease_ttl) is not None:
                self._sweep = asyncio.create_task(self._sweep_once(), name="sweeper")  # Graph may be slow: jobs need not wait for it
        if (self._watch is None or self._watch.done()) and time.monotonic() >= self._next_watch:
            self._next_watch = time.monotonic() + min(WATCH_CADENCE, self.service.watch.interval)
            fence = await self.store.locks.acquire("watch", self.owner, self.lease_ttl)
            if fence is not None:
                self._watch = asyncio.create_task(self._watch_once(fence), name="watch")
        runnable = await self.store.jobs.ids(statuses=RUNNABLE)
        self._idle = not runnable and all(task.done() for task in self._running.values())
        for job_id in runnable:
            if job_id in self._running and not self._running[job_id].done():
                continue
            fence = await self.store.locks.acquire(f"job:{job_id}", self.owner, self.lease_ttl)
            if fence is not None:
                self._running[job_id] = asyncio.create_task(self._run_leased(job_id, fence), name=f"job-{job_id[:8]}")

    async def _sweep_once(self) -> None:
        try:
            await self.service.sweeper.sweep()
        except Exception:  # noqa: BLE001 - the next tick sweeps again
            log.exception("sweeping expired secrets and credential removals failed; trying again")

    async def _watch_once(self, fence: Fence) -> None:
        """The day-two checks that are due, under the "watch" lease (renewed before each setup's check)."""
        async def renew() -> bool:
            return await self.store.locks.renew(fence, self.lease_ttl)

        try:
            await self.service.watch.run_once(fence, renew)
        except Exception:  # noqa: BLE001 - the next pass checks again
            log.exception("the day-two checks failed; trying again")

    async def _run_leased(self, job_id: str, fence: Fence) -> None:
        runner = asyncio.create_task(self._guarded(job_id, fence))
        renewer = asyncio.create_task(self._renew(fence, runner))
        try:
            await runner
        except asyncio.CancelledError:
            log.info("the run of job %s stopped (cancelled, or its lease was lost)", job_id)
        except (StoreError, JobCancelled) as exc:
            log.info("the run of job %s stopped: %s", job_id, exc)
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            await self.store.locks.release(fence)
            self._running.pop(job_id, None)
            self.wake.set()  # a cancel requested meanwhile is finished at once

    async def _guarded(self, job_id: str, fence: Fence) -> None:
        async def guard() -> None:
            await self.store.jobs.guard(job_id, fence, ACTIVE)

        write_guard.set(guard)
        await self.run_job(job_id, fence)

    async def _renew(self, fence: Fence, runner: "asyncio.Task[None]") -> None:
        """Keep the lease while the job runs; if another worker took it over, stop this run."""
        while not runner.done():
            await asyncio.sleep(self.lease_ttl / 3)
            if not await self.store.locks.renew(fence, self.lease_ttl):
                log.warning("lost the lease %s; stopping this run", fence.name)
                runner.cancel()
                return

    async def run_job(self, job_id: str, fence: Fence) -> None:
        job = await self.core.load(job_id)
        if job.status == JobStatus.CANCELLING:
            write_guard.set(None)  # removing what the job made is what a cancel asks for
            await self.service.cancellation.finish(job, fence)
            await self.service.sweeper.remove_for(job_id)
            return
        if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            return
        if job.status == JobStatus.QUEUED:
            await self.core.apply(JobChange(job_id, fence=fence, allow=ACTIVE, status=JobStatus.RUNNING.value))
        ctx = self.core.context(job, fence)

        async def beat() -> None:
            if not await self.store.locks.renew(fence, self.lease_ttl):
                raise JobCancelled(f"the lease on job {job_id} was lost")
            await self.store.jobs.guard(job_id, fence, ACTIVE)

        ctx.heartbeat = beat
        ctx.fresh = self.core.take_over(job_id)
        while True:
            job = await self.core.load(job_id)  # every step reads the job afresh: a cancel or a take-over is seen at once
            row = next((r for r in job.steps if not StepStatus(r["status"]).finished and r["status"] != StepStatus.PROPAGATING.value), None)
            if row is None:
                await self.service.finish_if_done(job_id, fence=fence)
                return
            status = StepStatus(row["status"])
            if status == StepStatus.WAITING_FOR_OPERATOR:
                await self.core.apply(JobChange(job_id, fence=fence, allow=ACTIVE, status=JobStatus.WAITING_FOR_OPERATOR.value))
                return
            if status == StepStatus.FAILED:
                await self.core.apply(JobChange(job_id, fence=fence, allow=ACTIVE, status=JobStatus.FAILED.value))
                return
            ctx.on_retry = self._retry_reporter(job_id, fence, row["name"])
            if not await self._run_step(job, fence, STEP_BY_NAME[row["name"]], ctx, row["attempts"]):
                return

    def _retry_reporter(self, job_id: str, fence: Fence, step: str) -> Any:
        async def report(reason: str, delay: float) -> None:
            await self.core.apply(JobChange(job_id, fence=fence, allow=ACTIVE, steps={step: {"status": StepStatus.RETRYING.value, "message": reason}},
                                            events=[event(EventKind.STEP_RETRYING, step=step, message=reason, data={"delay": delay})]))
            if not await self.store.locks.renew(fence, self.lease_ttl):
                raise JobCancelled(f"the lease on job {job_id} was lost")

        return report

    async def _run_step(self, job: JobRecord, fence: Fence, step: Step, ctx: StepContext, attempts: int) -> bool:
        name = step.name.value
        await self.core.apply(JobChange(job.id, fence=fence, allow=ACTIVE, steps={name: {"status": StepStatus.RUNNING.value, "message": "", "attempts": attempts + 1}},
                                        events=[event(EventKind.STEP_STARTED, step=name, message=step.name.label)]))
        try:
            current = await step.read(ctx)
            planned = step.decide(ctx, current)
            if step.guided and (planned.action == StepAction.NO_CHANGE or not step.ready(ctx)):
                if planned.action == StepAction.NO_CHANGE:
                    await step.adopt(ctx, current)
                    await self.service.step_done(job.id, fence, name, step.outputs(ctx, current), planned.summary)
                    return True
                await self.service.wait_for_operator(job.id, fence, step, ctx)
                return False
            if planned.action == StepAction.NO_CHANGE:
                await step.adopt(ctx, current)
                outputs = step.outputs(ctx, current)
            else:
                outputs = await step.act(ctx, current)
                if step.name in (StepName.CLIENT_SECRET, StepName.FEDERATED_CREDENTIAL):
                    await ctx.remember(needs_new_auth=True)
            check = await step.verify(ctx)
            if not check.ok:
                raise ProvisioningError(check.text, action="Retry when it is fixed.", step=name)
            await self.service.step_done(job.id, fence, name, outputs, check.text or planned.summary)
            return True
        except (asyncio.CancelledError, StoreError, JobCancelled):
            raise
        except ProvisioningError as exc:
            await self.service.step_failed(job.id, fence, name, exc)
            return False
        except Exception as exc:  # noqa: BLE001 - an unexpected failure still ends as a visible, retryable step failure
            log.exception("step %s of job %s failed unexpectedly", name, job.id)
            await self.service.step_failed(job.id, fence, name, ProvisioningError(
                f"Unexpected error ({type(exc).__name__}).", action="Retry; if it fails again, check the bot's log.", step=name))
            return False

    async def fire_timers(self) -> None:
        """Each due reminder fires once, in the same transaction that completes its job when it was the last thing."""
        for timer in await self.store.jobs.due_timers(time.time()):
            job = await self.core.load(str(timer["job_id"]))
            step = StepName.SECURED_ACCESS.value
            others_done = all(StepStatus(r["status"]).finished for r in job.steps if r["name"] != step)
            change = JobChange(job.id, version=job.version, fire_timer=int(timer["id"]),
                               steps={step: {"status": StepStatus.DONE.value,
                                             "message": "Require secured access is now in effect (the propagation window has passed)."}},
                               events=[event(EventKind.REMINDER_DUE, step=step,
                                             message="The propagation window has passed: Require secured access is now in effect.")])
            if others_done and job.status.value in COMPLETABLE:
                change.status = JobStatus.COMPLETED.value
                change.events.append(event(EventKind.JOB_COMPLETED, message="Every step is done."))
                change.audit.append(audit(SERVICE, "completed"))
            try:
                await self.core.apply(change)
            except (JobStateChanged, LeaseLost):
                continue  # fired elsewhere, or the job moved on meanwhile: the next tick decides again
