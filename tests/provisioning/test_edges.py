"""Guarantees that hold when things go wrong (issue: correct at every edge), over real HTTPS against the sandbox."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from provisioning import EventKind, JobStatus, ProvisioningService, StepName, StepStatus
from provisioning.errors import ForeignObjectError, ValidationFailed
from sandbox import FaultSettings, Sandbox
from store import JobChange, LeaseLost
from tests.fixtures.provisioning import agent_request, make_service
from tests.fixtures.sandbox import sandbox_http

from .helpers import APPROVER, REQUESTER, run_to_completion, wait_job, waiting_on


async def tenant(sb: Sandbox) -> dict[str, Any]:
    async with sandbox_http(sb) as http:
        return dict((await http.get(f"{sb.url}/_sandbox/state")).json())


def ours(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [a for a in state["applications"] if (a.get("uniqueName") or "").startswith("cps-auth-")]


async def wait_for_step_start(svc: ProvisioningService, job_id: str, step: StepName) -> None:
    seq = 0
    for _ in range(400):
        for event in await svc.wait_for_events(seq, 0.05):
            seq = event.seq
            if event.job_id == job_id and event.kind == EventKind.STEP_STARTED and event.step == step:
                return
    raise AssertionError(f"{step.value} never started")


@pytest.mark.parametrize("step", [StepName.APP_REGISTRATION, StepName.CLIENT_SECRET])
async def test_cancel_while_a_step_runs_stops_writes_and_removes_what_the_job_made(sandbox: Sandbox, service: ProvisioningService, step: StepName) -> None:
    """Edges #3: a job cancelled while app_registration ran still created the app and a secret, sealed it, and ended
    waiting_for_operator. Now the cancel stops the run, what the job made is removed, and it ends cancelled for good."""
    await sandbox.set_faults(FaultSettings(replication_delay_s=0.2, latency_ms=150))
    job = await service.submit(await service.plan(agent_request(sandbox)), REQUESTER, APPROVER)
    await wait_for_step_start(service, job.id, step)
    await asyncio.sleep(0.05)  # inside the step, a Microsoft request on its way
    acknowledged = await service.cancel(job.id, REQUESTER)
    assert acknowledged.status in (JobStatus.CANCELLING, JobStatus.CANCELLED)
    done = await wait_job(service, job.id, lambda v: v.status == JobStatus.CANCELLED and all(state == "done" for _, state in v.cleanup), timeout=30)
    assert all(s.status.finished for s in done.steps) and not done.secret_available
    await asyncio.sleep(1.0)  # a run that would go on writing has had time to
    state = await tenant(sandbox)
    assert [a for a in ours(state) if a.get("passwordCredentials") or a.get("deletedDateTime") is None] == [], \
        f"nothing the cancelled job made is left: {[(a['displayName'], a.get('passwordCredentials')) for a in ours(state)]}"
    after = await service.get_job(job.id)
    assert after.status == JobStatus.CANCELLED, "cancelled for good"
    kinds = [e.kind for e in await service.events_after(0, 10_000) if e.job_id == job.id]
    assert EventKind.SECRET_READY not in kinds[kinds.index(EventKind.JOB_CANCELLING):], "no secret was sealed after the cancel"
    assert EventKind.WAITING_FOR_OPERATOR not in kinds


async def test_a_worker_that_stalled_past_its_lease_cannot_write_over_the_new_owner(sandbox: Sandbox, service: ProvisioningService) -> None:
    """Edges #4: the vault used INSERT OR REPLACE and step writes were unconditioned, so a stalled worker could
    overwrite the new owner's secret row or step state. Now its writes are refused with LeaseLost."""
    job = await service.submit(await service.plan(agent_request(sandbox)), REQUESTER, APPROVER)
    await wait_job(service, job.id, waiting_on(StepName.COPILOT_AUTHENTICATION))
    locks = service.store.locks
    stalled = await locks.acquire(f"job:{job.id}", "stalled-worker", ttl=0.1)
    assert stalled is not None
    await asyncio.sleep(0.2)
    new_owner = await locks.acquire(f"job:{job.id}", "new-worker", ttl=30)
    assert new_owner is not None and new_owner.generation == stalled.generation + 1
    record = await service.load(job.id)
    before = (await service.store.vault.get(job.id)) or {}
    ctx = service.core.context(record, stalled, allow=tuple(s.value for s in JobStatus))
    assert ctx.seal_secret is not None
    with pytest.raises(LeaseLost):
        await ctx.seal_secret("key-from-the-stalled-run", "not-the-real-secret", dict(record.data))
    with pytest.raises(LeaseLost):
        await service.step_done(job.id, stalled, StepName.COPILOT_AUTHENTICATION.value, {}, "stale run")
    assert (await service.store.vault.get(job.id) or {}).get("key_id") == before.get("key_id")
    assert (await service.get_job(job.id)).step(StepName.COPILOT_AUTHENTICATION).status == StepStatus.WAITING_FOR_OPERATOR


async def test_a_job_whose_steps_are_all_done_is_finished_at_start(sandbox: Sandbox, tmp_path: Path) -> None:
    """Edges #6: firing the reminder and completing the job were two transactions; a crash between them left the job
    propagating forever. Now they are one, and a job left like that by an older version is completed at start."""
    first = make_service(sandbox, tmp_path, run_worker=False)
    await first.start()
    try:
        job = await first.submit(await first.plan(agent_request(sandbox, connect_customer_service=False)), REQUESTER, APPROVER)
        done = {s.step.value: {"status": StepStatus.DONE.value} for s in job.steps if s.status != StepStatus.SKIPPED}
        await first.store.jobs.apply(JobChange(job.id, status=JobStatus.PROPAGATING.value, steps=done))  # the state a crash left
    finally:
        await first.close()
    second = make_service(sandbox, tmp_path)
    await second.start()
    try:
        finished = await wait_job(second, job.id, lambda v: v.status == JobStatus.COMPLETED, timeout=10)
        assert [e.kind for e in await second.events_after(0, 1000) if e.job_id == finished.id].count(EventKind.JOB_COMPLETED) == 1
    finally:
        await second.close()


async def test_the_reminder_fires_and_completes_the_job_in_one_transaction(sandbox: Sandbox, service: ProvisioningService) -> None:
    job = await service.submit(await service.plan(agent_request(sandbox, connect_customer_service=False)), REQUESTER, APPROVER)
    done = await run_to_completion(service, job)
    assert done.status == JobStatus.COMPLETED
    events = [e for e in await service.events_after(0, 1000) if e.job_id == job.id]
    reminder = next(e for e in events if e.kind == EventKind.REMINDER_DUE)
    completed = next(e for e in events if e.kind == EventKind.JOB_COMPLETED)
    assert completed.seq == reminder.seq + 1, "appended by the same transaction, nothing between them"


async def test_an_expired_secret_is_removed_durably_until_graph_confirms(sandbox: Sandbox, tmp_path: Path) -> None:
    """Edges #10: a failed removePassword only logged a warning, leaving a secret nobody holds. Now expiry deletes the
    vault row and records a removal in one transaction, and the removal is tried again until Graph confirms it."""
    svc = make_service(sandbox, tmp_path, SECRET_HANDOFF_TTL="1s")
    await svc.start()
    try:
        job = await svc.submit(await svc.plan(agent_request(sandbox)), REQUESTER, APPROVER)
        await wait_job(svc, job.id, waiting_on(StepName.COPILOT_AUTHENTICATION))
        await sandbox.set_faults(FaultSettings(replication_delay_s=0, unavailable_rate=1.0))  # Graph down while the secret expires
        failed = await wait_job(svc, job.id, lambda v: v.status == JobStatus.FAILED and bool(v.cleanup), timeout=20)
        assert not failed.secret_available and failed.cleanup[0][1] in ("pending", "retrying")
        assert len(ours(await tenant(sandbox))[0]["passwordCredentials"]) == 1, "Graph was down: the secret is still there"
        for _ in range(300):  # Graph keeps answering 503: the removal is tried, and kept
            pending = await svc.store.removals.for_job(job.id)
            if pending[0]["attempts"] >= 1:
                break
            await asyncio.sleep(0.05)
        assert pending[0]["done_at"] is None and pending[0]["attempts"] >= 1 and "503" in pending[0]["last_error"]
        await sandbox.set_faults(FaultSettings(replication_delay_s=0))
        await svc.store.db.wait_for_change(svc.store.db.changes, 0.1)
        async with svc.store.db.transaction() as tx:  # the next attempt is due now (instead of after the backoff)
            await tx.execute("UPDATE credential_removals SET next_attempt_at = 0")
        removed = await wait_job(svc, job.id, lambda v: all(state == "done" for _, state in v.cleanup), timeout=20)
        assert removed.cleanup and ours(await tenant(sandbox))[0]["passwordCredentials"] == []
        assert [e.kind for e in await svc.events_after(0, 1000) if e.job_id == job.id].count(EventKind.CREDENTIAL_REMOVED) == 1
        holder = await svc.store.locks.holder("sweeper")
        assert holder is not None and holder[0] == svc.worker.owner  # type: ignore[union-attr]  # one process sweeps at a time
    finally:
        await svc.close()


async def test_a_removal_graph_answers_404_for_is_done(sandbox: Sandbox, service: ProvisioningService) -> None:
    job = await service.submit(await service.plan(agent_request(sandbox, connect_customer_service=False)), REQUESTER, APPROVER)
    view = await wait_job(service, job.id, waiting_on(StepName.COPILOT_AUTHENTICATION))
    from store import NewRemoval

    object_id = view.step(StepName.APP_REGISTRATION).outputs["object_id"]
    await service.store.jobs.apply(JobChange(job.id, removals=[NewRemoval(object_id, "password", "00000000-0000-0000-0000-000000000000", "test")]))
    done = await wait_job(service, job.id, lambda v: v.cleanup and all(state == "done" for _, state in v.cleanup), timeout=10)
    assert done.cleanup


async def test_an_app_registration_someone_else_made_is_not_adopted(sandbox: Sandbox, tmp_path: Path) -> None:
    """Edges #13: with Application.ReadWrite.All an app registration with the predictable uniqueName made by someone
    else was adopted (and changed). Now its owners are checked first, and the plan stops with what to do."""
    first = make_service(sandbox, tmp_path / "first", run_worker=False)
    await first.start()
    try:
        plan = await first.plan(agent_request(sandbox))
        unique = next(n for s in plan.steps for n in s.notes if n.startswith("uniqueName ")).split()[1]
    finally:
        await first.close()
    async with sandbox_http(sandbox) as http:
        made = await http.post(f"{sandbox.url}/_sandbox/applications", json={"uniqueName": unique, "displayName": "Someone else's app"})
        assert made.status_code in (200, 201), made.text
        client = (await http.post(f"{sandbox.url}/_sandbox/clients", json={
            "display_name": "provisioning with .All", "roles": ["Application.ReadWrite.All", "Policy.Read.All"],
            "dataverse_roles": {origin: ["System Administrator"] for origin in sandbox.env["DATAVERSE_URL"].split(",")}})).json()
    broad = make_service(sandbox, tmp_path / "broad", run_worker=False, PROVISIONING_CLIENT_ID=client["client_id"],
                         PROVISIONING_CLIENT_SECRET=client["client_secret"])
    await broad.start()
    try:
        with pytest.raises(ForeignObjectError) as refused:
            await broad.plan(agent_request(sandbox))
        assert "Someone else's app" in refused.value.message and "was not changed" in refused.value.message
        assert "owner" in refused.value.action
        apps = [a for a in (await tenant(sandbox))["applications"] if a.get("uniqueName") == unique]
        assert [a["displayName"] for a in apps] == ["Someone else's app"], "left as it was"
        other = await broad.plan(agent_request(sandbox, schema="cr7b2_fabrikamServiceDesk", app_display_name="Fabrikam auth",
                                               connect_customer_service=False, environment=1))
        advice = [c for c in other.preflight.checks if c.advice and c.name == "graph_role"]
        assert advice and "Application.ReadWrite.OwnedBy" in advice[0].message, "the preflight recommends OwnedBy when .All is granted"
    finally:
        await broad.close()


async def test_retry_shows_a_new_plan_when_the_tenant_changed(sandbox: Sandbox, service: ProvisioningService) -> None:
    """Edges #14: Retry applied the old plan even when the tenant had changed since the approval."""
    await sandbox.set_faults(FaultSettings(replication_delay_s=0, dataverse_burst_rate=1.0))  # publish keeps failing
    job = await service.submit(await service.plan(agent_request(sandbox, connect_customer_service=False, require_secured_access=False)), REQUESTER, APPROVER)
    await wait_job(service, job.id, waiting_on(StepName.COPILOT_AUTHENTICATION))
    await service.perform_in_sandbox(job.id, StepName.COPILOT_AUTHENTICATION, REQUESTER)
    failed = await wait_job(service, job.id, lambda v: v.status == JobStatus.FAILED)
    client_id = failed.step(StepName.APP_REGISTRATION).outputs["client_id"]
    async with sandbox_http(sandbox) as http:  # someone edits the app registration in the Entra admin center meanwhile
        edited = await http.patch(f"{sandbox.url}/_sandbox/applications/{client_id}", json={"web": {"redirectUris": ["https://example.com/added"]}})
        assert edited.status_code == 200, edited.text
    await sandbox.set_faults(FaultSettings(replication_delay_s=0))
    outcome = await service.retry(job.id, REQUESTER)
    assert outcome.plan is not None, "the change needs a new approval"
    assert [(s, c.field) for s, c in outcome.changes] == [(StepName.APP_REGISTRATION, "web.redirectUris")]
    assert (await service.get_job(job.id)).status == JobStatus.FAILED, "nothing was applied yet"
    await service.retry_approved(job.id, outcome.plan.hash, APPROVER)
    done = await wait_job(service, job.id, lambda v: v.status in (JobStatus.COMPLETED, JobStatus.FAILED), timeout=30)
    assert done.status == JobStatus.COMPLETED
    app = next(a for a in (await tenant(sandbox))["applications"] if a["appId"] == client_id)
    assert app["web"]["redirectUris"] == list(agent_request(sandbox).redirect_uris), "the approved plan was applied"
    assert [a["action"] for a in await service.audit_log(job.id)].count("retry_approved") == 1


async def test_a_tenant_that_blocks_client_secrets_is_told_before_approval(sandbox: Sandbox, service: ProvisioningService) -> None:
    """Edges #15: the app-management policy's passwordAddition restriction is read by the preflight."""
    async with sandbox_http(sandbox) as http:
        r = await http.put(f"{sandbox.url}/_sandbox/policy", json={"block_password_addition": True})
        assert r.status_code == 200, r.text
    with pytest.raises(ValidationFailed) as blocked:
        await service.plan(agent_request(sandbox, credential="client_secret"))
    assert "federated credential" in blocked.value.by_field()["credential"]
    plan = await service.plan(agent_request(sandbox, credential="federated"))
    assert plan.preflight.ok, "the federated credential is allowed under the same policy"


async def test_the_federated_path_makes_one_credential_and_a_rerun_changes_nothing(sandbox: Sandbox, service: ProvisioningService) -> None:
    job = await service.submit(await service.plan(agent_request(sandbox, credential="federated")), REQUESTER, APPROVER)
    done = await run_to_completion(service, job)
    assert done.status == JobStatus.COMPLETED, [(s.step.value, s.status.value, s.message) for s in done.steps]
    again = await service.plan(agent_request(sandbox, credential="federated"))
    changing = {s.step: s.action.value for s in again.steps if not s.skip_reason and s.action.value not in ("no_change",)}
    assert changing == {StepName.SECURED_ACCESS: "manual"}, changing
    rerun = await run_to_completion(service, await service.submit(again, REQUESTER, APPROVER))
    assert rerun.status == JobStatus.COMPLETED
    [app] = ours(await tenant(sandbox))
    assert app["passwordCredentials"] == [] and len(app["federatedIdentityCredentials"]) == 1, "one app, one federated credential"
