"""Helpers for provisioning tests: wait on journal events, perform guided steps as an operator would."""

from __future__ import annotations

import asyncio

from provisioning import Actor, JobStatus, JobView, ProvisioningService, StepName, StepStatus
from store import Database

REQUESTER = Actor("11111111-1111-1111-1111-111111111111", "Riley Requester")
APPROVER = Actor("22222222-2222-2222-2222-222222222222", "Avery Approver")


async def wait_job(svc: ProvisioningService, job_id: str, predicate, timeout: float = 30.0) -> JobView:  # type: ignore[no-untyped-def]
    """Wait, on journal events rather than sleeps, until the job view satisfies `predicate`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    seq = 0
    while True:
        view = await svc.get_job(job_id)
        if predicate(view):
            return view
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise AssertionError(f"job {job_id} did not reach the expected state; now {view.status} {[(s.step.value, s.status.value, s.message) for s in view.steps]}")
        events = await svc.wait_for_events(seq, min(remaining, 0.5))
        if events:
            seq = events[-1].seq


def waiting_on(step: StepName):  # type: ignore[no-untyped-def]
    return lambda v: v.step(step).status == StepStatus.WAITING_FOR_OPERATOR or v.status == JobStatus.FAILED


async def run_to_completion(svc: ProvisioningService, job: JobView) -> JobView:
    """Do every guided step in the sandbox as the operator would, until the job completes."""
    guided = (StepName.FEDERATED_CREDENTIAL, *(s for s in StepName if s.guided))
    for step in (s.step for s in job.steps if s.step in guided):
        if job.step(step).status == StepStatus.SKIPPED:
            continue
        view = await wait_job(svc, job.id, lambda v, s=step: v.step(s).status in (StepStatus.WAITING_FOR_OPERATOR, StepStatus.DONE, StepStatus.PROPAGATING) or v.status == JobStatus.FAILED)
        assert view.status != JobStatus.FAILED, [(s.step.value, s.message) for s in view.steps]
        if view.step(step).status == StepStatus.WAITING_FOR_OPERATOR:
            await svc.perform_in_sandbox(job.id, step, REQUESTER)
    return await wait_job(svc, job.id, lambda v: v.status in (JobStatus.COMPLETED, JobStatus.FAILED))


def count_round_trips(db: Database) -> list[str]:
    """Every read, transaction and write the process starts on `db` from now on, by name."""
    seen: list[str] = []
    for name in ("read", "transaction", "write_all"):
        original = getattr(db, name)

        def counted(*args: object, _original: object = original, _name: str = name) -> object:
            seen.append(_name)
            return _original(*args)  # type: ignore[operator]

        setattr(db, name, counted)
    return seen
