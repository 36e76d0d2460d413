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
    assert StepName.SERVICE_PRINCIPAL not in actions
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
    assert {s.step: s.action for s in again.steps} == {
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
