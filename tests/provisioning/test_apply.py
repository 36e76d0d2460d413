"""A full setup against the sandbox over real HTTPS, and a re-run that changes nothing."""

from __future__ import annotations

import json

from provisioning import EventKind, JobStatus, ProvisioningService, StepAction, StepName, StepStatus
from sandbox import Sandbox
from tests.fixtures.provisioning import agent_request
from tests.fixtures.sandbox import sandbox_http

from .helpers import APPROVER, REQUESTER, run_to_completion


async def state(sb: Sandbox) -> dict:  # type: ignore[type-arg]
    async with sandbox_http(sb) as http:
        return (await http.get(f"{sb.url}/_sandbox/state")).json()  # type: ignore[no-any-return]


async def test_full_apply_then_rerun_changes_nothing(sandbox: Sandbox, service: ProvisioningService) -> None:
    request = agent_request(sandbox)
    plan = await service.plan(request)
    actions = {s.step: s.action for s in plan.steps}
    assert actions[StepName.APP_REGISTRATION] == StepAction.CREATE
    assert actions[StepName.CLIENT_SECRET] == StepAction.CREATE
    assert actions[StepName.COPILOT_AUTHENTICATION] == StepAction.MANUAL
    assert actions[StepName.PUBLISH] == StepAction.UPDATE
    skipped = {s.step: s.skip_reason for s in plan.steps if s.skip_reason}
    assert set(skipped) == {StepName.SERVICE_PRINCIPAL, StepName.FEDERATED_CREDENTIAL}, "steps that will not run say why"
    assert plan.preflight.ok

    job = await service.submit(plan, REQUESTER, APPROVER, {"conversation": "c1"})
    done = await run_to_completion(service, job)
    assert done.status == JobStatus.COMPLETED, [(s.step.value, s.status.value, s.message) for s in done.steps]
    assert done.step(StepName.SERVICE_PRINCIPAL).status == StepStatus.SKIPPED
    client_id = done.step(StepName.APP_REGISTRATION).outputs["client_id"]

    tenant = await state(sandbox)
    apps = [a for a in tenant["applications"] if a["appId"] == client_id]
    assert len(apps) == 1
    app = apps[0]
    assert app["signInAudience"] == "AzureADMultipleOrgs"
    assert app["web"]["redirectUris"] == list(request.redirect_uris)
    assert app["web"]["implicitGrantSettings"] == {"enableAccessTokenIssuance": True, "enableIdTokenIssuance": True}
    assert len(app["passwordCredentials"]) == 1
    bot = next(b for b in tenant["environments"]["contoso"]["bots"] if b["schemaname"] == "cr6a1_contosoSupport")
    assert bot["authenticationmode"] == 3
    assert json.loads(bot["synchronizationstatus"])["lastPublishedDetails"]["authenticationMode"] == "CustomAzureActiveDirectory"
    assert any(u["msdyn_botapplicationid"] == bot["registration_application_id"] for u in tenant["environments"]["contoso"]["bot_application_users"])

    kinds = [e.kind for e in await service.events_after(0, 1000) if e.job_id == job.id]
    assert kinds.count(EventKind.REMINDER_DUE) == 1 and kinds[-1] == EventKind.JOB_COMPLETED

    again = await service.plan(request)
    assert {s.step: s.action for s in again.steps if not s.skip_reason} == {
        StepName.APP_REGISTRATION: StepAction.NO_CHANGE, StepName.CLIENT_SECRET: StepAction.NO_CHANGE,
        StepName.COPILOT_AUTHENTICATION: StepAction.NO_CHANGE, StepName.PUBLISH: StepAction.NO_CHANGE,
        StepName.SECURED_ACCESS: StepAction.MANUAL, StepName.CUSTOMER_SERVICE_CONNECTION: StepAction.NO_CHANGE,
    }
    rerun = await service.submit(again, REQUESTER, APPROVER)
    finished = await run_to_completion(service, rerun)
    assert finished.status == JobStatus.COMPLETED
    after = await state(sandbox)
    assert len(after["applications"]) == len(tenant["applications"])
    assert [len(a["passwordCredentials"]) for a in after["applications"] if a["appId"] == client_id] == [1]


async def test_a_new_secret_for_an_app_that_exists_already(sandbox: Sandbox, service: ProvisioningService) -> None:
    """Regression: when the app registration needed no change, the job never recorded its ids, so a new secret
    (the old one removed, or a crash right after Graph created the app) failed with KeyError."""
    first = await run_to_completion(service, await service.submit(await service.plan(agent_request(sandbox)), REQUESTER, APPROVER))
    assert first.status == JobStatus.COMPLETED
    object_id = first.step(StepName.APP_REGISTRATION).outputs["object_id"]
    app = await service.core.graph.get_application(object_id, select=("id", "passwordCredentials"))
    for cred in app["passwordCredentials"]:
        await service.core.graph.remove_password(object_id, cred["keyId"])
    plan = await service.plan(agent_request(sandbox))
    actions = {s.step: s.action for s in plan.steps}
    assert actions[StepName.APP_REGISTRATION] == StepAction.NO_CHANGE and actions[StepName.CLIENT_SECRET] == StepAction.CREATE
    second = await run_to_completion(service, await service.submit(plan, REQUESTER, APPROVER))
    assert second.status == JobStatus.COMPLETED, [(s.step.value, s.status.value, s.message) for s in second.steps]
    tenant = await state(sandbox)
    assert [len(a["passwordCredentials"]) for a in tenant["applications"] if a["id"] == object_id] == [1]


async def test_the_approval_reads_once_and_the_job_reuses_those_reads(sandbox: Sandbox, service: ProvisioningService) -> None:
    """What bench/apply.py measures, held as a test: after approval, no resource is read twice before the first
    hand-off, and reads that do not depend on each other go out together."""
    import asyncio

    from .helpers import wait_job, waiting_on

    plan = await service.plan(agent_request(sandbox))
    calls: list[str] = []

    async def record(request) -> None:  # type: ignore[no-untyped-def]
        calls.append(f"{request.method} {request.url.path.split('(')[0].rsplit('/', 1)[-1] if '(' in request.url.path else request.url.path}")

    for client in service.core._clients:
        client.event_hooks["request"].append(record)
    job = await service.submit(plan, REQUESTER, APPROVER)
    view = await wait_job(service, job.id, waiting_on(StepName.COPILOT_AUTHENTICATION))
    await asyncio.sleep(0.1)
    object_id = view.step(StepName.APP_REGISTRATION).outputs["object_id"]
    assert sorted(calls) == sorted([
        "GET /api/data/v9.2/WhoAmI", "GET /api/data/v9.2/bots", "GET /v1.0/policies/defaultAppManagementPolicy",  # the stale-plan check
        "GET applications", "GET /api/data/v9.2/systemusers",                                    # …its step reads
        "PATCH applications", f"POST /v1.0/applications/{object_id}/addPassword",
    ]), calls


async def test_an_approval_delivered_twice_starts_one_job(sandbox: Sandbox, service: ProvisioningService) -> None:
    import asyncio
    import uuid

    from provisioning.errors import JobStateError

    plan = await service.plan(agent_request(sandbox))
    job_id = str(uuid.uuid4())
    first, second = await asyncio.gather(*(service.submit_approved(plan.request, plan.hash, REQUESTER, APPROVER, job_id=job_id) for _ in range(2)))
    again = await service.submit_approved(plan.request, plan.hash, REQUESTER, APPROVER, job_id=job_id)
    assert first.id == second.id == again.id == job_id
    assert [j.id for j in await service.list_jobs()] == [job_id]
    try:
        await service.submit_approved(plan.request, "another-hash", REQUESTER, APPROVER, job_id=job_id)
    except JobStateError as exc:
        assert "another plan" in str(exc)
    else:
        raise AssertionError("a different plan under the same job id must be refused")
