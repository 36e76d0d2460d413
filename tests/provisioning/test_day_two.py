"""Day two, through the service over real HTTPS against the sandbox: the watch's expiry notices and drift findings,
rotation, the switch to a federated credential, putting drift back, keeping a change, and removal."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from provisioning import EventKind, JobStatus, ProvisioningService, StepName
from provisioning.errors import ForeignObjectError, JobStateError
from provisioning.steps import STEP_BY_NAME
from sandbox import Sandbox
from tests.fixtures.provisioning import agent_request, make_service
from tests.fixtures.sandbox import sandbox_http

from .helpers import APPROVER, REQUESTER, run_to_completion

DAY = 86_400.0


async def tenant(sb: Sandbox) -> dict[str, Any]:
    async with sandbox_http(sb) as http:
        return dict((await http.get(f"{sb.url}/_sandbox/state")).json())


async def sandbox_call(sb: Sandbox, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    async with sandbox_http(sb) as http:
        r = await http.request(method, f"{sb.url}/_sandbox/{path}", json=body)
        assert r.status_code < 300, r.text
        return dict(r.json()) if r.content else {}


def our_app(state: dict[str, Any]) -> dict[str, Any]:
    apps = [a for a in state["applications"] if (a.get("uniqueName") or "").startswith("cps-auth-") and not a.get("deletedDateTime")]
    assert len(apps) == 1, [a.get("uniqueName") for a in apps]
    return apps[0]


async def set_up(svc: ProvisioningService, sb: Sandbox, **kw: Any) -> str:
    """A completed setup; its subject."""
    kw.setdefault("credential", "client_secret")
    kw.setdefault("require_secured_access", False)
    job = await svc.submit(await svc.plan(agent_request(sb, **kw)), REQUESTER, APPROVER)
    done = await run_to_completion(svc, job)
    assert done.status == JobStatus.COMPLETED, [(s.step.value, s.message) for s in done.steps]
    return (await svc.load(job.id)).subject


async def apply(svc: ProvisioningService, subject: str, change: str) -> Any:
    plan = await svc.propose(subject, change)
    job = await svc.submit(plan, REQUESTER, APPROVER)
    done = await run_to_completion(svc, job)
    assert done.status == JobStatus.COMPLETED, [(s.step.value, s.status.value, s.message) for s in done.steps]
    return plan, done


async def kinds(svc: ProvisioningService, *wanted: EventKind) -> list[Any]:
    return [e for e in await svc.events_after(0, 100_000) if e.kind in wanted]


async def test_expiry_notices_at_30_7_and_1_days_arrive_once_also_after_a_restart(sandbox: Sandbox, tmp_path: Path,
                                                                                   backend: dict[str, str]) -> None:
    svc = make_service(sandbox, tmp_path / "a", run_worker=True, **backend)
    await svc.start()
    try:
        subject = await set_up(svc, sandbox, secret_lifetime_days=60)
        healthy = await svc.check_setup(subject)
        assert healthy.healthy and "as approved" in healthy.last_result.lower()
        assert await kinds(svc, EventKind.SECRET_EXPIRING) == [], "60 days left: no notice"
        await sandbox.set_clock_offset(31 * DAY)  # 29 days left, by Graph's clock
        await svc.check_setup(subject)
        await svc.check_setup(subject)
        notices = await kinds(svc, EventKind.SECRET_EXPIRING)
        assert [n.data["threshold"] for n in notices] == [30], "one notice, the first check only"
    finally:
        await svc.close()
    again = make_service(sandbox, tmp_path / "a", run_worker=True, **backend)  # a restart, on the same database
    await again.start()
    try:
        await again.check_setup(subject)
        assert [n.data["threshold"] for n in await kinds(again, EventKind.SECRET_EXPIRING)] == [30], "not again after the restart"
        await sandbox.set_clock_offset(53.5 * DAY)
        await again.check_setup(subject)
        await sandbox.set_clock_offset(59.2 * DAY)
        await again.check_setup(subject)
        await again.check_setup(subject)
        notices = await kinds(again, EventKind.SECRET_EXPIRING)
        assert [n.data["threshold"] for n in notices] == [30, 7, 1]
        assert "expires in 1 day" in notices[-1].message
        assert all(n.job_id == notices[0].job_id for n in notices), "on the setup's job, so in its conversation"
    finally:
        await sandbox.set_clock_offset(0)
        await again.close()


async def test_rotation_ends_with_exactly_the_new_secret_and_the_agent_verified(sandbox: Sandbox, service: ProvisioningService) -> None:
    subject = await set_up(service, sandbox)
    old = our_app(await tenant(sandbox))["passwordCredentials"]
    assert len(old) == 1
    plan, done = await apply(service, subject, "rotate")
    actions = {s.step: s.action.value for s in plan.steps if not s.skip_reason}
    assert actions[StepName.CLIENT_SECRET] == "create" and actions[StepName.RETIRE_CREDENTIAL] == "delete"
    assert actions[StepName.COPILOT_AUTHENTICATION] == "manual" and StepName.SECURED_ACCESS not in actions
    assert done.step(StepName.COPILOT_AUTHENTICATION).status.value == "done", "verified in Dataverse before the old one went"
    now = our_app(await tenant(sandbox))["passwordCredentials"]
    assert len(now) == 1 and now[0]["keyId"] != old[0]["keyId"], "exactly one valid secret: the new one"
    setup = await service.check_setup(subject)
    assert setup.job_id == done.id and setup.healthy, "the rotation is now what was approved"
    with pytest.raises(JobStateError):
        await service.propose(subject, "nonsense")


async def test_switch_to_federated_leaves_no_password(sandbox: Sandbox, service: ProvisioningService) -> None:
    subject = await set_up(service, sandbox)
    await apply(service, subject, "federated")
    app = our_app(await tenant(sandbox))
    assert app["passwordCredentials"] == [] and len(app["federatedIdentityCredentials"]) == 1
    setup = await service.check_setup(subject)
    assert setup.credential == "federated" and setup.healthy
    with pytest.raises(JobStateError, match="federated credential"):
        await service.propose(subject, "rotate")


async def test_drift_is_reported_once_and_put_back_after_approval(sandbox: Sandbox, service: ProvisioningService) -> None:
    subject = await set_up(service, sandbox)
    app = our_app(await tenant(sandbox))
    await sandbox_call(sandbox, "PATCH", f"applications/{app['appId']}", {"web": {"redirectUris": ["https://evil.example/cb"]}})
    first = await service.check_setup(subject)
    await service.check_setup(subject)
    found = await kinds(service, EventKind.DRIFT_FOUND)
    assert len(found) == 1, "reported once"
    change = found[0].data["findings"][0]["changes"][0]
    assert change["field"] == "web.redirectUris" and "evil.example" in change["now"] and "token.botframework.com" in change["approved"]
    assert not first.healthy and found[0].data["noticed_at"]
    plan, _done = await apply(service, subject, "repair")
    assert {s.step for s in plan.steps if s.action.value == "update"} == {StepName.APP_REGISTRATION}
    assert "https://evil.example/cb" not in our_app(await tenant(sandbox))["web"]["redirectUris"]
    assert (await service.check_setup(subject)).healthy
    assert len(await kinds(service, EventKind.DRIFT_FOUND)) == 1


async def test_an_agent_switched_away_is_drift_and_keeping_a_change_is_audited(sandbox: Sandbox, service: ProvisioningService) -> None:
    subject = await set_up(service, sandbox, connect_customer_service=True)
    bot_id = (await service.setups())[0].subject.split("|")[1]
    await sandbox_call(sandbox, "DELETE", f"bots/{bot_id}/customer-service-connection")
    setup = await service.check_setup(subject)
    assert [f["step"] for f in setup.findings] == [StepName.CUSTOMER_SERVICE_CONNECTION.value]
    kept = await service.keep_change(subject, APPROVER)
    assert kept.healthy and (await service.check_setup(subject)).healthy, "kept: no longer reported"
    setup_job = kept.job_id
    assert any(a["action"] == "kept_change" and a["actor"]["id"] == APPROVER.id for a in await service.audit_log(setup_job))
    await sandbox_call(sandbox, "POST", f"bots/{bot_id}/authentication", {"mode": 2})
    switched = await service.check_setup(subject)
    assert StepName.COPILOT_AUTHENTICATION.value in [f["step"] for f in switched.findings]
    plan = await service.propose(subject, "repair")
    assert {s.step: s.action.value for s in plan.steps}[StepName.CLIENT_SECRET] == "create", \
        "nobody holds the old secret any more: putting the agent back makes a new one, and retires the old"


async def test_removal_deletes_only_the_bots_app_registration(sandbox: Sandbox, service: ProvisioningService) -> None:
    subject = await set_up(service, sandbox, connect_customer_service=True)
    plan, done = await apply(service, subject, "remove")
    assert [s.step for s in plan.steps] == [StepName.AGENT_AUTHENTICATION_OFF, StepName.CUSTOMER_SERVICE_DISCONNECT, StepName.DELETE_APP_REGISTRATION]
    state = await tenant(sandbox)
    assert not [a for a in state["applications"] if (a.get("uniqueName") or "").startswith("cps-auth-") and not a.get("deletedDateTime")]
    setups = await service.setups()
    assert [s.status for s in setups] == ["removed"]
    with pytest.raises(JobStateError, match="removed"):
        await service.propose(subject, "rotate")
    assert done.step(StepName.DELETE_APP_REGISTRATION).status.value == "done"


async def test_removal_refuses_an_app_registration_the_bot_did_not_make(sandbox: Sandbox, tmp_path: Path) -> None:
    async with sandbox_http(sandbox) as http:
        client = (await http.post(f"{sandbox.url}/_sandbox/clients", json={
            "display_name": "provisioning with .All", "roles": ["Application.ReadWrite.All", "Policy.Read.All"],
            "dataverse_roles": {origin: ["System Administrator"] for origin in sandbox.env["DATAVERSE_URL"].split(",")}})).json()
    svc = make_service(sandbox, tmp_path / "all", PROVISIONING_CLIENT_ID=client["client_id"], PROVISIONING_CLIENT_SECRET=client["client_secret"])
    await svc.start()
    try:
        subject = await set_up(svc, sandbox)
        app = our_app(await tenant(sandbox))
        await svc.core.graph.delete_application(app["id"])  # someone deletes the bot's app and makes their own in its place
        await sandbox_call(sandbox, "POST", "applications", {"uniqueName": app["uniqueName"], "displayName": "Someone else's app"})
        with pytest.raises(ForeignObjectError, match="not made by this bot"):
            await svc.propose(subject, "remove")
        left = [a for a in (await tenant(sandbox))["applications"] if a.get("uniqueName") == app["uniqueName"] and not a.get("deletedDateTime")]
        assert [a["displayName"] for a in left] == ["Someone else's app"]
    finally:
        await svc.close()


async def test_a_removed_federated_credential_is_drift(sandbox: Sandbox, service: ProvisioningService) -> None:
    subject = await set_up(service, sandbox, credential="federated")
    app = our_app(await tenant(sandbox))
    name = app["federatedIdentityCredentials"][0]["name"]
    await sandbox_call(sandbox, "DELETE", f"applications/{app['appId']}/federatedIdentityCredentials/{name}")
    setup = await service.check_setup(subject)
    assert [f["step"] for f in setup.findings] == [StepName.FEDERATED_CREDENTIAL.value], setup.findings
    await apply(service, subject, "repair")
    assert len(our_app(await tenant(sandbox))["federatedIdentityCredentials"]) == 1
    assert (await service.check_setup(subject)).healthy


async def test_with_two_instances_one_watch_sends_each_notice_once(sandbox: Sandbox, tmp_path: Path, backend: dict[str, str]) -> None:
    """The watch runs under the "watch" lease: two instances on one database, checking every half second."""
    one_database = tmp_path / "one-database"
    first = make_service(sandbox, one_database, WATCH_INTERVAL="0.5s", **backend)
    second = make_service(sandbox, one_database, WATCH_INTERVAL="0.5s", **backend)
    await first.start()
    await second.start()
    try:
        await set_up(first, sandbox, secret_lifetime_days=60)
        await sandbox.set_clock_offset(55 * DAY)
        for _ in range(100):
            if await kinds(first, EventKind.SECRET_EXPIRING):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(3.0)  # several passes of both instances
        notices = await kinds(first, EventKind.SECRET_EXPIRING)
        assert [n.data["threshold"] for n in notices] == [7], "one notice (the most urgent), from one instance"
        checks = [a for a in await first.audit_log(notices[0].job_id) if a["action"] == "checked"]
        assert len(checks) == 1
    finally:
        await sandbox.set_clock_offset(0)
        await first.close()
        await second.close()


async def test_a_check_while_a_rotation_runs_reports_nothing_and_status_is_fresh_after(
        sandbox: Sandbox, service: ProvisioningService, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found on a slow machine: the watch checked a setup while its rotation was between removing the old secret and
    completing, reported 'the client secret this bot made is no longer on the app registration' as drift (a drift card
    in Teams), and status then showed the setup as changed since approval, or the last check from before the
    rotation ('expires in 1 days'). A setup with a change in progress is not checked; a change that completes is
    checked afresh."""
    subject = await set_up(service, sandbox)
    await service.check_setup(subject)
    step = STEP_BY_NAME[StepName.RETIRE_CREDENTIAL.value]
    act = step.act
    checked: list[Any] = []
    refused: list[str] = []

    async def act_then_the_watch_looks(ctx, current):  # type: ignore[no-untyped-def]
        result = await act(ctx, current)
        assert service.worker is not None  # a scheduled pass, under the worker's own watch lease
        fence = await service.core.store.locks.acquire("watch", service.worker.owner, 30)
        assert fence is not None
        checked.append(await service.watch.check(subject, fence=fence))  # the old secret is gone; the job has not completed yet
        try:
            await service.check_setup(subject)
            refused.append("")
        except JobStateError as exc:
            refused.append(exc.user_message())
        return result

    monkeypatch.setattr(step, "act", act_then_the_watch_looks)
    _plan, done = await apply(service, subject, "rotate")
    assert checked, "the watch looked while the rotation ran"
    assert refused and "in progress" in refused[0], refused  # "Check now" (or the command line) says why it did not check
    assert not await kinds(service, EventKind.DRIFT_FOUND), "nothing changed that was not approved"
    setup = next(s for s in await service.setups() if s.subject == subject)
    assert setup.job_id == done.id and setup.healthy
    assert setup.last_check_at is None or "180 days" in setup.last_result, setup.last_result
    await service.check_all()
    setup = next(s for s in await service.setups() if s.subject == subject)
    assert setup.healthy and "expires in 180 days; as approved" in setup.last_result, setup.last_result
