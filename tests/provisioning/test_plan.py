"""Validation, preflight and plan diffs for new, partly done and fully done setups; stale plans refused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from provisioning import (
    PreflightFailed,
    ProvisioningService,
    StalePlanError,
    StepAction,
    StepName,
    ValidationFailed,
)
from sandbox import Sandbox
from tests.fixtures.provisioning import agent_request, make_service
from tests.fixtures.sandbox import sandbox_http
from tests.sandbox.helpers import new_client

from .helpers import APPROVER, REQUESTER


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"app_display_name": ""}, "app_display_name", "Enter a name"),
        ({"app_display_name": "x" * 121}, "app_display_name", "at most 120"),
        ({"redirect_uris": ("http://example.com/cb",)}, "redirect_uris", "https://"),
        ({"redirect_uris": ("https://a.example.com/cb", "https://a.example.com/cb")}, "redirect_uris", "listed twice"),
        ({"redirect_uris": ()}, "redirect_uris", "at least one"),
        ({"redirect_uris": ("https://a.example.com/c(b)",)}, "redirect_uris", "does not allow"),
        ({"sign_in_audience": "Everyone"}, "sign_in_audience", "Choose one of"),
        ({"secret_lifetime_days": 0}, "secret_lifetime_days", "1 to 730"),
        ({"secret_lifetime_days": 731}, "secret_lifetime_days", "1 to 730"),
    ],
)
async def test_each_bad_field_gets_its_own_message(sandbox: Sandbox, service: ProvisioningService, changes: dict, field: str, words: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ValidationFailed) as info:
        await service.plan(replace(agent_request(sandbox), **changes))
    assert words in info.value.by_field()[field]


async def test_agent_problems_are_field_errors(sandbox: Sandbox, service: ProvisioningService) -> None:
    with pytest.raises(ValidationFailed) as unknown:
        await service.plan(agent_request(sandbox, schema="cr0_doesNotExist"))
    assert "No agent 'cr0_doesNotExist'" in unknown.value.by_field()["agent"]
    with pytest.raises(ValidationFailed) as long_name:
        await service.plan(agent_request(sandbox, schema="cr6a1_contosoReturnsWarranty"))
    assert "over 30" in long_name.value.by_field()["connect_customer_service"]
    plan = await service.plan(agent_request(sandbox, schema="cr6a1_contosoReturnsWarranty", connect_customer_service=False))
    skipped = next(s for s in plan.steps if s.step == StepName.CUSTOMER_SERVICE_CONNECTION)
    assert "over 30 characters" in skipped.skip_reason, "the plan says why the step is skipped"
    with pytest.raises(ValidationFailed) as policy:
        await service.plan(agent_request(sandbox, secret_lifetime_days=400))
    assert "at most 365 days" in policy.value.by_field()["secret_lifetime_days"]


async def test_preflight_names_what_is_missing(sandbox: Sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    async with sandbox_http(sandbox) as http:
        no_graph_id, no_graph_secret = await new_client(http, sandbox, [], {sandbox.env["DATAVERSE_URL"].split(",")[0]: ["System Administrator"]})
        no_dv_id, no_dv_secret = await new_client(http, sandbox, ["Application.ReadWrite.OwnedBy"])
    for cid, secret, check, words in (
        (no_graph_id, no_graph_secret, "graph_role", "Application.ReadWrite.OwnedBy"),
        (no_dv_id, no_dv_secret, "dataverse_access", "Application users"),
    ):
        svc = make_service(sandbox, tmp_path / cid, run_worker=False, PROVISIONING_CLIENT_ID=cid, PROVISIONING_CLIENT_SECRET=secret)
        await svc.start()
        try:
            with pytest.raises(PreflightFailed) as info:
                await svc.plan(agent_request(sandbox))
        finally:
            await svc.close()
        failed = {c.name: c for c in info.value.report.checks if not c.ok}
        assert check in failed and words in failed[check].remedy
    bad = make_service(sandbox, tmp_path / "bad", run_worker=False, PROVISIONING_CLIENT_SECRET="wrong")
    await bad.start()
    try:
        with pytest.raises(PreflightFailed) as info:
            await bad.plan(agent_request(sandbox))
    finally:
        await bad.close()
    assert "PROVISIONING_CLIENT_SECRET" in str(info.value.report.checks[0].remedy)
    assert "AADSTS7000215" in info.value.report.checks[0].message


async def test_plan_for_an_agent_set_up_by_hand_and_stale_plans(sandbox: Sandbox, service: ProvisioningService) -> None:
    hr = await service.plan(agent_request(sandbox, schema="cr6a1_contosoHrHelpdesk", app_display_name="HR auth"))
    actions = {s.step: s.action for s in hr.steps}
    # a new secret must be entered by hand and published, although the agent already authenticates manually
    assert actions[StepName.COPILOT_AUTHENTICATION] == StepAction.MANUAL
    assert actions[StepName.PUBLISH] == StepAction.UPDATE
    assert actions[StepName.CUSTOMER_SERVICE_CONNECTION] == StepAction.NO_CHANGE
    again = await service.plan(agent_request(sandbox, schema="cr6a1_contosoHrHelpdesk", app_display_name="HR auth"))
    assert again.hash == hr.hash

    plan = await service.plan(agent_request(sandbox))
    async with sandbox_http(sandbox) as http:  # someone connects the agent by hand after the plan was approved
        bot_id = plan.agent.bot_id
        await http.post(f"{sandbox.url}/_sandbox/bots/{bot_id}/customer-service-connection")
    with pytest.raises(StalePlanError):
        await service.submit(plan, REQUESTER, APPROVER)
    fresh = await service.plan(agent_request(sandbox))
    assert {s.step: s.action for s in fresh.steps}[StepName.CUSTOMER_SERVICE_CONNECTION] == StepAction.NO_CHANGE
    assert fresh.hash != plan.hash


async def test_partly_done_setup_plans_updates(sandbox: Sandbox, service: ProvisioningService) -> None:
    from .helpers import wait_job, waiting_on

    plan = await service.plan(agent_request(sandbox))
    job = await service.submit(plan, REQUESTER, APPROVER)
    await wait_job(service, job.id, waiting_on(StepName.COPILOT_AUTHENTICATION))
    changed = replace(agent_request(sandbox), sign_in_audience="AzureADMyOrg")
    partial = await service.plan(changed)
    steps = {s.step: s for s in partial.steps}
    assert steps[StepName.APP_REGISTRATION].action == StepAction.UPDATE
    assert [(c.field, c.before, c.after) for c in steps[StepName.APP_REGISTRATION].changes] == [("signInAudience", "AzureADMultipleOrgs", "AzureADMyOrg")]
    assert steps[StepName.CLIENT_SECRET].action == StepAction.NO_CHANGE
    assert steps[StepName.COPILOT_AUTHENTICATION].action == StepAction.MANUAL


def count_agent_reads(service: ProvisioningService):  # type: ignore[no-untyped-def]
    """Counts the service's Dataverse reads of the agent list (the first environment's)."""
    client = next(iter(service.core.dataverse.values()))
    reads = 0
    real = client.list_bots

    async def counted() -> list:  # type: ignore[type-arg]
        nonlocal reads
        reads += 1
        return await real()

    client.list_bots = counted  # type: ignore[method-assign]
    return lambda: reads


async def test_the_agent_list_is_read_once_for_concurrent_callers_and_again_when_old(sandbox: Sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    service = make_service(sandbox, tmp_path / "svc", run_worker=False, AGENT_LIST_MAX_AGE="0.3s")
    await service.start()
    try:
        reads = count_agent_reads(service)
        lists = await asyncio.gather(*(service.list_agents() for _ in range(20)))
        assert reads() == 1 and all(names == lists[0] for names in lists) and lists[0]
        lists[0].clear()  # callers get their own copy
        assert await service.list_agents() and reads() == 1
        await asyncio.sleep(0.35)
        assert await service.list_agents() and reads() == 2
        service.forget_agents()
        assert await service.list_agents() and reads() == 3
    finally:
        await service.close()


async def test_finishing_a_step_drops_the_cached_agent_list(sandbox: Sandbox, tmp_path) -> None:  # type: ignore[no-untyped-def]
    service = make_service(sandbox, tmp_path / "svc", run_worker=False)
    await service.start()
    try:
        reads = count_agent_reads(service)
        await service.list_agents()
        job = await service.submit(await service.plan(agent_request(sandbox)), REQUESTER, APPROVER)
        await service.list_agents()
        assert reads() == 1
        fence = await service.store.locks.acquire(f"job:{job.id}", "test-worker", 30)
        assert fence is not None
        await service.step_done(job.id, fence, StepName.APP_REGISTRATION.value, {}, "created")
        await service.list_agents()
        assert reads() == 2
    finally:
        await service.close()
