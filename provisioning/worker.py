"""Runs jobs: takes a lease, resumes each job from its last durable step, fires due timers (the
propagation reminder) exactly once, and removes client secrets nobody retrieved in time."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
import uuid
from typing import TYPE_CHECKING, Any

from .errors import MicrosoftApiError, ProvisioningError
from .journal import Journal
from .models import EventKind, JobStatus, StepName, StepStatus
from .steps import STEPS, Step, StepContext

if TYPE_CHECKING:
    from .service import ProvisioningService

log = logging.getLogger(__name__)
STEP_BY_NAME: dict[str, Step] = {s.name.value: s for s in STEPS}
RUNNABLE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)


class Worker:
    def __init__(self, service: "ProvisioningService", *, poll_interval: float = 1.0) -> None:
        self.service = service
        self.journal: Journal = service.journal
        self.owner = f"worker-{uuid.uuid4().hex[:12]}"
        self.poll_interval = poll_interval
        self.lease_ttl = service.settings.lease_ttl.total_seconds()
        self.wake = asyncio.Event()
        self._running: dict[str, asyncio.Task[None]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="provisioning-worker")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for task in list(self._running.values()):
            task.cancel()
        await asyncio.gather(*self._running.values(), return_exceptions=True)
        self._running.clear()

    async def _loop(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the loop must survive anything one tick hits
                log.exception("worker tick failed; continuing")
            self.wake.clear()
            try:
                await asyncio.wait_for(self.wake.wait(), self.poll_interval)
            except asyncio.TimeoutError:
                pass

    async def tick(self) -> None:
        await self.fire_timers()
        await self.service.expire_secrets()
        jobs = await self.journal.tx(lambda c: [r["id"] for r in c.execute(
            f"SELECT id FROM jobs WHERE status IN ({','.join('?' * len(RUNNABLE))}) ORDER BY created_at", RUNNABLE)])
        for job_id in jobs:
            if job_id in self._running and not self._running[job_id].done():
                continue
            if await self.journal.acquire_lease(job_id, self.owner, self.lease_ttl):
                self._running[job_id] = asyncio.create_task(self._run_leased(job_id), name=f"job-{job_id[:8]}")

    async def _run_leased(self, job_id: str) -> None:
        runner = asyncio.create_task(self.run_job(job_id))
        renewer = asyncio.create_task(self._renew(job_id, runner))
        try:
            await runner
        finally:
            renewer.cancel()
            await asyncio.gather(renewer, return_exceptions=True)
            await self.journal.release_lease(job_id, self.owner)
            await self.journal.notify()

    async def _renew(self, job_id: str, runner: "asyncio.Task[None]") -> None:
        """Keep the lease while the job runs; if another worker took it over, stop this run."""
        while not runner.done():
            await asyncio.sleep(self.lease_ttl / 3)
            if not await self.journal.acquire_lease(job_id, self.owner, self.lease_ttl):
                log.warning("lost the lease on job %s; stopping this run", job_id)
                runner.cancel()
                return

    async def heartbeat(self, job_id: str) -> None:
        if not await self.journal.acquire_lease(job_id, self.owner, self.lease_ttl):
            raise asyncio.CancelledError(f"lease on job {job_id} was lost")

    async def run_job(self, job_id: str) -> None:
        job = await self.service.load(job_id)
        if job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            return
        if job.status == JobStatus.QUEUED:
            await self.service.set_job_status(job_id, JobStatus.RUNNING)
        ctx = await self.service.context(job_id, job.data, heartbeat=lambda: self.heartbeat(job_id))
        ctx.fresh = self.service.take_over(job_id)
        for row in await self.service.step_rows(job_id):
            name, status = row["name"], StepStatus(row["status"])
            if status.finished or status == StepStatus.PROPAGATING:
                continue
            if status == StepStatus.WAITING_FOR_OPERATOR:
                await self.service.set_job_status(job_id, JobStatus.WAITING_FOR_OPERATOR)
                return
            if status == StepStatus.FAILED:
                await self.service.set_job_status(job_id, JobStatus.FAILED)
                return
            step = STEP_BY_NAME[name]
            ctx.on_retry = self._retry_reporter(job_id, name)
            if not await self._run_step(job_id, step, ctx, row["attempts"]):
                return
        await self.service.finish_if_done(job_id)

    def _retry_reporter(self, job_id: str, step: str) -> Any:
        async def report(reason: str, delay: float) -> None:
            def fn(c: sqlite3.Connection) -> None:
                Journal.update_step(c, job_id, step, status=StepStatus.RETRYING.value, message=reason)
                Journal.event(c, job_id, EventKind.STEP_RETRYING.value, step=step, message=reason, data={"delay": delay})

            await self.journal.tx(fn)
            await self.journal.notify()
            await self.heartbeat(job_id)

        return report

    async def _run_step(self, job_id: str, step: Step, ctx: StepContext, attempts: int) -> bool:
        name = step.name.value

        def started(c: sqlite3.Connection) -> None:
            Journal.update_step(c, job_id, name, status=StepStatus.RUNNING.value, message="", attempts=attempts + 1)
            Journal.event(c, job_id, EventKind.STEP_STARTED.value, step=name, message=step.name.label)

        await self.journal.tx(started)
        await self.journal.notify()
        try:
            current = await step.read(ctx)
            planned = step.decide(ctx, current)
            if step.guided:
                if planned.action.value == "no_change":
                    await self.service.step_done(job_id, name, step.outputs(ctx, current), planned.summary)
                    return True
                await self.service.wait_for_operator(job_id, step, ctx)
                return False
            if planned.action.value == "no_change":
                await step.adopt(ctx, current)
                outputs = step.outputs(ctx, current)
            else:
                outputs = await step.act(ctx, current)
                if step.name == StepName.CLIENT_SECRET:
                    await ctx.remember(needs_new_auth=True)
            check = await step.verify(ctx)
            if not check.ok:
                raise ProvisioningError(check.text, action="Retry when it is fixed.", step=name)
            await self.service.step_done(job_id, name, outputs, check.text or planned.summary)
            return True
        except asyncio.CancelledError:
            raise
        except ProvisioningError as exc:
            await self.service.step_failed(job_id, name, exc)
            return False
        except Exception as exc:  # noqa: BLE001 - an unexpected failure still ends as a visible, retryable step failure
            log.exception("step %s of job %s failed unexpectedly", name, job_id)
            await self.service.step_failed(job_id, name, ProvisioningError(
                f"Unexpected error ({type(exc).__name__}).", action="Retry; if it fails again, check the bot's log.", step=name))
            return False

    async def fire_timers(self) -> None:
        now = time.time()
        due = await self.journal.tx(lambda c: list(c.execute("SELECT id, job_id, kind FROM timers WHERE fired_at IS NULL AND due_at <= ?", (now,))))
        for timer in due:
            def fire(c: sqlite3.Connection, t: sqlite3.Row = timer) -> bool:
                if c.execute("UPDATE timers SET fired_at = ? WHERE id = ? AND fired_at IS NULL", (time.time(), t["id"])).rowcount != 1:
                    return False  # another worker fired it
                step = StepName.SECURED_ACCESS.value
                Journal.update_step(c, t["job_id"], step, status=StepStatus.DONE.value,
                                    message="Require secured access is now in effect (the propagation window has passed).")
                Journal.event(c, t["job_id"], EventKind.REMINDER_DUE.value, step=step,
                              message="The propagation window has passed: Require secured access is now in effect.")
                return True

            if await self.journal.tx(fire):
                await self.journal.notify()
                await self.service.finish_if_done(timer["job_id"])


def decode(row: sqlite3.Row, key: str) -> Any:
    return json.loads(row[key])


__all__ = ["Worker", "MicrosoftApiError"]
