"""An idle instance on PostgreSQL waits for announced changes (LISTEN/NOTIFY) instead of querying the database on
every poll, and still picks up a new job at once and fires a timer when it is due."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from provisioning import EventKind, JobStatus, ProvisioningService, StepName, StepStatus
from sandbox import Sandbox
from tests.fixtures.provisioning import agent_request, make_service

from .helpers import APPROVER, REQUESTER, count_round_trips, wait_job, waiting_on


async def test_an_idle_worker_waits_for_changes_yet_takes_a_new_job_at_once_and_fires_its_timer_on_time(
        sandbox: Sandbox, tmp_path: Path, postgres_url: str) -> None:
    # the worker polls every 0.05 s (the test fixtures' pace) and sweeps every 5 s (a 20 s lease)
    service = make_service(sandbox, tmp_path / "svc", DATABASE_URL=postgres_url, LEASE_TTL="20s", PROPAGATION_DELAY="2s")
    await service.start()
    try:
        db = service.core.store.db
        assert db.announces_changes
        await asyncio.sleep(1.0)  # the first ticks: the sweep and watch passes of a fresh start
        trips = count_round_trips(db)
        await asyncio.sleep(3.0)
        # before: about 3 queries per poll, ~180 in 3 s; now one tick per announced change or due time
        assert len(trips) <= 10, f"{len(trips)} round trips to the database in 3 s of idling: {trips}"

        submitted = time.monotonic()
        job = await service.submit(await service.plan(agent_request(sandbox, connect_customer_service=False)), REQUESTER, APPROVER)
        await wait_job(service, job.id, lambda v: v.step(StepName.APP_REGISTRATION).status != StepStatus.PENDING)
        assert time.monotonic() - submitted < 2.0, "the worker waited for its idle poll instead of the announced job"

        await wait_job(service, job.id, waiting_on(StepName.COPILOT_AUTHENTICATION))
        await service.perform_in_sandbox(job.id, StepName.COPILOT_AUTHENTICATION, REQUESTER)
        await wait_job(service, job.id, waiting_on(StepName.SECURED_ACCESS))
        propagating = await service.confirm_step(job.id, StepName.SECURED_ACCESS, REQUESTER)
        due_at = propagating.step(StepName.SECURED_ACCESS).due_at
        assert due_at is not None
        done = await wait_job(service, job.id, lambda v: v.status in (JobStatus.COMPLETED, JobStatus.FAILED))
        assert done.status == JobStatus.COMPLETED
        fired = [e for e in await service.events_after(0, 1000) if e.job_id == job.id and e.kind == EventKind.REMINDER_DUE]
        assert len(fired) == 1
        late = (fired[0].at - due_at).total_seconds()
        assert 0 <= late < 1.0, f"the reminder fired {late:.2f} s after it was due (the idle poll is 5 s)"
    finally:
        await service.close()


async def test_a_stopped_worker_leaves_no_waiter_behind(service: ProvisioningService) -> None:
    """Stopped while it waits for a change, the worker ends its waiters too: one left pending was destroyed when the
    event loop closed, inside the change counter's lock ("Lock is not acquired")."""
    await asyncio.sleep(0.3)  # the worker's first ticks; it is now waiting
    waiting = [t for t in asyncio.all_tasks() if "wait_for_change" in repr(t.get_coro())]
    assert waiting, "the worker is not waiting for a change: nothing to check"
    assert service.worker is not None
    await service.worker.stop()
    assert [t for t in waiting if not t.done()] == []
