"""Guided steps: instructions, confirmation with verification, a failed verification, explicit override."""

from __future__ import annotations

import pytest

from provisioning import EventKind, JobStateError, JobStatus, ProvisioningService, StepName, StepStatus
from sandbox import FaultSettings, Sandbox
from tests.fixtures.provisioning import agent_request
from tests.fixtures.sandbox import sandbox_http

from .helpers import APPROVER, REQUESTER, wait_job, waiting_on


async def test_confirm_without_doing_it_fails_verification_then_override_is_recorded(sandbox: Sandbox, service: ProvisioningService) -> None:
    job = await service.submit(await service.plan(agent_request(sandbox)), REQUESTER, APPROVER)
    view = await wait_job(service, job.id, waiting_on(StepName.COPILOT_AUTHENTICATION))
    step = view.step(StepName.COPILOT_AUTHENTICATION)
    assert step.instructions is not None and step.instructions.secret_handoff
    client_id = view.step(StepName.APP_REGISTRATION).outputs["client_id"]
    assert ("Client ID", client_id) in step.instructions.values
    assert any("profile openid" in s for s in step.instructions.steps)
    assert view.secret_available

    with pytest.raises(JobStateError):
        await service.confirm_step(job.id, StepName.COPILOT_AUTHENTICATION, REQUESTER, override=True)  # not before a failed check
    early = await service.confirm_step(job.id, StepName.COPILOT_AUTHENTICATION, REQUESTER)
    assert "has not been handed over" in early.step(StepName.COPILOT_AUTHENTICATION).verification
    await service.take_secret(job.id, REQUESTER)
    checked = await service.confirm_step(job.id, StepName.COPILOT_AUTHENTICATION, REQUESTER)
    auth = checked.step(StepName.COPILOT_AUTHENTICATION)
    assert auth.status == StepStatus.WAITING_FOR_OPERATOR
    assert "authenticationmode 2" in auth.verification and "connectionName" in auth.verification

    overridden = await service.confirm_step(job.id, StepName.COPILOT_AUTHENTICATION, REQUESTER, override=True)
    assert overridden.step(StepName.COPILOT_AUTHENTICATION).status == StepStatus.OVERRIDDEN
    audit = await service.audit_log(job.id)
    assert any(a["action"] == "overridden" and a["actor"]["id"] == REQUESTER.id for a in audit)
    kinds = [e.kind for e in await service.events_after(0, 1000) if e.job_id == job.id]
    assert EventKind.VERIFICATION_FAILED in kinds and EventKind.STEP_OVERRIDDEN in kinds
    with pytest.raises(JobStateError):
        await service.confirm_step(job.id, StepName.COPILOT_AUTHENTICATION, REQUESTER)


async def test_done_is_refused_while_the_new_secret_waits_in_the_hand_off(sandbox: Sandbox, service: ProvisioningService) -> None:
    """Edges #7: an agent already in manual mode with a connection passed "Done" although the new secret never left
    the vault. Now Done is refused with the reason until the secret is handed over; continuing anyway is recorded."""
    job = await service.submit(await service.plan(agent_request(sandbox, schema="cr6a1_contosoHrHelpdesk", app_display_name="HR auth")),
                               REQUESTER, APPROVER)
    waiting = await wait_job(service, job.id, waiting_on(StepName.COPILOT_AUTHENTICATION))
    assert waiting.secret_available
    refused = await service.confirm_step(job.id, StepName.COPILOT_AUTHENTICATION, REQUESTER)
    auth = refused.step(StepName.COPILOT_AUTHENTICATION)
    assert auth.status == StepStatus.WAITING_FOR_OPERATOR and "has not been handed over" in auth.verification
    overridden = await service.confirm_step(job.id, StepName.COPILOT_AUTHENTICATION, REQUESTER, override=True)
    assert overridden.step(StepName.COPILOT_AUTHENTICATION).status == StepStatus.OVERRIDDEN
    assert [a["detail"]["result"] for a in await service.audit_log(job.id) if a["action"] == "overridden"][0].startswith("Continued without verification")


async def test_secured_access_confirmation_schedules_one_reminder(sandbox: Sandbox, service: ProvisioningService) -> None:
    job = await service.submit(await service.plan(agent_request(sandbox, connect_customer_service=False)), REQUESTER, APPROVER)
    await wait_job(service, job.id, waiting_on(StepName.COPILOT_AUTHENTICATION))
    await service.perform_in_sandbox(job.id, StepName.COPILOT_AUTHENTICATION, REQUESTER)
    await wait_job(service, job.id, waiting_on(StepName.SECURED_ACCESS))
    propagating = await service.confirm_step(job.id, StepName.SECURED_ACCESS, REQUESTER)
    step = propagating.step(StepName.SECURED_ACCESS)
    assert step.status == StepStatus.PROPAGATING and step.due_at is not None
    assert "takes effect by" in step.message
    done = await wait_job(service, job.id, lambda v: v.status in (JobStatus.COMPLETED, JobStatus.FAILED))
    assert done.status == JobStatus.COMPLETED
    kinds = [e.kind for e in await service.events_after(0, 1000) if e.job_id == job.id]
    assert kinds.count(EventKind.PROPAGATION_STARTED) == 1 and kinds.count(EventKind.REMINDER_DUE) == 1
    assert kinds.index(EventKind.REMINDER_DUE) < kinds.index(EventKind.JOB_COMPLETED)


async def test_secret_is_handed_to_the_requester_once(sandbox: Sandbox, service: ProvisioningService) -> None:
    from provisioning import NotAuthorizedError, SecretUnavailableError

    job = await service.submit(await service.plan(agent_request(sandbox)), REQUESTER, APPROVER)
    await wait_job(service, job.id, waiting_on(StepName.COPILOT_AUTHENTICATION))
    with pytest.raises(NotAuthorizedError):
        await service.take_secret(job.id, APPROVER)
    secret = await service.take_secret(job.id, REQUESTER)
    assert len(secret) >= 16
    with pytest.raises(SecretUnavailableError):
        await service.take_secret(job.id, REQUESTER)
    assert not (await service.get_job(job.id)).secret_available
    async with sandbox_http(sandbox) as http:  # the secret works: Copilot Studio (emulated) accepts it
        view = await service.get_job(job.id)
        r = await http.post(f"{sandbox.url}/_sandbox/bots/{view.agent.bot_id}/manual-authentication",
                            json={"client_id": view.step(StepName.APP_REGISTRATION).outputs["client_id"], "client_secret": secret, "scopes": "profile openid"})
    assert r.status_code == 200
    confirmed = await service.confirm_step(job.id, StepName.COPILOT_AUTHENTICATION, REQUESTER)
    assert confirmed.step(StepName.COPILOT_AUTHENTICATION).status == StepStatus.DONE


async def test_a_failed_step_says_what_to_do_and_retry_finishes(sandbox: Sandbox, service: ProvisioningService) -> None:
    from .helpers import run_to_completion

    await sandbox.set_faults(FaultSettings(replication_delay_s=0, dataverse_burst_rate=1.0))  # every publish call bursts
    job = await service.submit(await service.plan(agent_request(sandbox, connect_customer_service=False, require_secured_access=False)), REQUESTER, APPROVER)
    await wait_job(service, job.id, waiting_on(StepName.COPILOT_AUTHENTICATION))
    await service.perform_in_sandbox(job.id, StepName.COPILOT_AUTHENTICATION, REQUESTER)
    failed = await wait_job(service, job.id, lambda v: v.status == JobStatus.FAILED)
    step = failed.step(StepName.PUBLISH)
    assert step.status == StepStatus.FAILED
    assert "Dataverse" in step.message and "retry" in step.message.lower() and "request id" in step.message
    await sandbox.set_faults(FaultSettings(replication_delay_s=0))
    outcome = await service.retry(job.id, REQUESTER)
    assert outcome.plan is None, "nothing changed in the tenant meanwhile: the retry needs no new approval"
    retried = await service.get_job(job.id)
    assert retried.status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.COMPLETED)
    done = await run_to_completion(service, retried)
    assert done.status == JobStatus.COMPLETED
    assert any(a["action"] == "retried" for a in await service.audit_log(job.id))


async def test_a_rerun_offers_to_keep_the_earlier_secured_access_confirmation(sandbox, service) -> None:  # type: ignore[no-untyped-def]
    """Credential #5: a re-run for an agent whose secured access was confirmed before says when and by whom, and keeping
    that confirmation (recorded) finishes the step without a second propagation window."""
    from provisioning import JobStatus, StepName, StepStatus
    from tests.fixtures.provisioning import agent_request

    from .helpers import APPROVER, REQUESTER, run_to_completion, wait_job, waiting_on

    first = await service.submit(await service.plan(agent_request(sandbox, connect_customer_service=False)), REQUESTER, APPROVER)
    assert (await run_to_completion(service, first)).status == JobStatus.COMPLETED
    again = await service.submit(await service.plan(agent_request(sandbox, connect_customer_service=False)), REQUESTER, APPROVER)
    waiting = await wait_job(service, again.id, waiting_on(StepName.SECURED_ACCESS))
    instructions = waiting.step(StepName.SECURED_ACCESS).instructions
    assert instructions is not None and instructions.previous and instructions.previous[1] == REQUESTER.name, instructions
    done = await service.confirm_step(again.id, StepName.SECURED_ACCESS, APPROVER, keep_previous=True)
    assert done.step(StepName.SECURED_ACCESS).status == StepStatus.DONE and "Kept the earlier confirmation" in done.step(StepName.SECURED_ACCESS).message
    assert (await wait_job(service, again.id, lambda v: v.status == JobStatus.COMPLETED, timeout=10)).status == JobStatus.COMPLETED
    assert any(a["action"] == "kept_confirmation" for a in await service.audit_log(again.id))


async def test_done_still_counts_when_the_reminder_fires_while_it_is_checked(sandbox: Sandbox, tmp_path, backend, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Found on a slow machine: 'Done' on the Customer Service step was refused with "The setup changed while this was
    being done" because the secured-access reminder fired while the connection was being verified. An unrelated
    change is no reason to refuse: the confirmation is made again on the job as it is now."""
    import time as clock

    from provisioning import worker as worker_module
    from provisioning.steps import STEP_BY_NAME
    from tests.fixtures.provisioning import make_service

    service = make_service(sandbox, tmp_path / "svc", PROPAGATION_DELAY="1h", **backend)
    await service.start()
    try:
        job = await service.submit(await service.plan(agent_request(sandbox)), REQUESTER, APPROVER)
        await wait_job(service, job.id, waiting_on(StepName.COPILOT_AUTHENTICATION))
        await service.perform_in_sandbox(job.id, StepName.COPILOT_AUTHENTICATION, REQUESTER)
        await wait_job(service, job.id, waiting_on(StepName.SECURED_ACCESS))
        await service.confirm_step(job.id, StepName.SECURED_ACCESS, REQUESTER)
        await wait_job(service, job.id, waiting_on(StepName.CUSTOMER_SERVICE_CONNECTION))
        step = STEP_BY_NAME[StepName.CUSTOMER_SERVICE_CONNECTION.value]
        verify = step.verify
        fired: list[bool] = []

        async def verify_while_the_reminder_fires(ctx):  # type: ignore[no-untyped-def]
            result = await verify(ctx)
            if not fired:  # the propagation window ends right now, while this click is being checked
                later = clock.time() + 7200
                monkeypatch.setattr(worker_module.time, "time", lambda: later)
                assert service.worker is not None
                await service.worker.fire_timers()
                monkeypatch.undo()
                fired.append(True)
            return result

        monkeypatch.setattr(step, "verify", verify_while_the_reminder_fires)
        await service.perform_in_sandbox(job.id, StepName.CUSTOMER_SERVICE_CONNECTION, REQUESTER)
        assert fired
        done = await wait_job(service, job.id, lambda v: v.status in (JobStatus.COMPLETED, JobStatus.FAILED))
        assert done.status == JobStatus.COMPLETED, [(s.step.value, s.status.value, s.message) for s in done.steps]
        assert done.step(StepName.CUSTOMER_SERVICE_CONNECTION).status == StepStatus.DONE
        kinds = [e.kind for e in await service.events_after(0, 1000) if e.job_id == job.id]
        assert kinds.count(EventKind.REMINDER_DUE) == 1 and kinds.count(EventKind.JOB_COMPLETED) == 1
    finally:
        await service.close()
