"""Fault storms, request-body contract checks, secret expiry and the secret-leak scan."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import httpx
import pytest

from provisioning import JobStatus, ProvisioningService, StepName, StepStatus
from sandbox import FaultSettings, Sandbox, schema
from tests.fixtures.provisioning import agent_request, make_service

from .helpers import APPROVER, REQUESTER, run_to_completion, wait_job, waiting_on

GRAPH_BODY_DEFS = {
    ("POST", "applications"): "request.applications.create",
    ("PATCH", "upsert"): "request.applications.upsert",
    ("PATCH", "applications"): "request.applications.update",
    ("POST", "addPassword"): "request.applications.addPassword",
    ("POST", "removePassword"): "request.applications.removePassword",
    ("POST", "servicePrincipals"): "request.servicePrincipals.create",
}


def body_definition(request: httpx.Request) -> str | None:
    path = request.url.path
    if request.method == "PATCH" and "uniqueName=" in path:
        return GRAPH_BODY_DEFS[("PATCH", "upsert")]
    for (method, marker), definition in GRAPH_BODY_DEFS.items():
        if request.method == method and path.rstrip("/").endswith(marker):
            return definition
    return None


async def test_storm_of_429_503_and_replication_delay_every_job_completes(sandbox: Sandbox, service: ProvisioningService) -> None:
    seen: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        seen.append(request)

    service.core.graph.http._client.event_hooks["request"].append(record)  # public httpx hook: capture every Graph request
    plans = [await service.plan(agent_request(sandbox, schema=s, app_display_name=f"{s} auth", connect_customer_service=False, create_service_principal=True))
             for s in ("cr6a1_contosoSupport", "cr6a1_contosoHrHelpdesk")]
    await sandbox.set_faults(FaultSettings(replication_delay_s=0.3, throttle_rate=0.2, unavailable_rate=0.1, retry_after_s=0.05,
                                           dataverse_burst_rate=0.3, seed=11))
    jobs = [await service.submit(p, REQUESTER, APPROVER) for p in plans]
    done = await asyncio.gather(*(run_to_completion(service, j) for j in jobs))
    assert [d.status for d in done] == [JobStatus.COMPLETED, JobStatus.COMPLETED], [[(s.step.value, s.message) for s in d.steps] for d in done]
    retries = [e for e in await service.events_after(0, 10_000) if e.kind.value == "step_retrying"]
    assert retries, "the storm should have caused retries"
    assert any("Retry-After" in e.message or "throttl" in e.message for e in retries)
    bodies = [(r, body_definition(r)) for r in seen if r.content]
    assert any(d == "request.applications.upsert" for _, d in bodies) and any(d == "request.applications.addPassword" for _, d in bodies)
    for request, definition in bodies:
        assert definition is not None, f"unclassified Graph request {request.method} {request.url.path}"
        problems = schema.errors(definition, json.loads(request.content))
        assert not problems, (request.url.path, [p.message for p in problems])


async def test_unretrieved_secret_expires_and_is_removed(sandbox: Sandbox, tmp_path: Path) -> None:
    svc = make_service(sandbox, tmp_path, SECRET_HANDOFF_TTL="1s")
    await svc.start()
    try:
        job = await svc.submit(await svc.plan(agent_request(sandbox)), REQUESTER, APPROVER)
        await wait_job(svc, job.id, waiting_on(StepName.COPILOT_AUTHENTICATION))
        failed = await wait_job(svc, job.id, lambda v: v.status == JobStatus.FAILED)
        assert failed.step(StepName.CLIENT_SECRET).status == StepStatus.FAILED
        assert "not handed over" in failed.step(StepName.CLIENT_SECRET).message and "Retry" in failed.step(StepName.CLIENT_SECRET).message
        assert not failed.secret_available
        from tests.fixtures.sandbox import sandbox_http

        async with sandbox_http(sandbox) as http:
            async def removed() -> bool:
                tenant = (await http.get(f"{sandbox.url}/_sandbox/state")).json()
                app = next(a for a in tenant["applications"] if a["appId"] == failed.step(StepName.APP_REGISTRATION).outputs["client_id"])
                return not app["passwordCredentials"]

            for _ in range(100):
                if await removed():
                    break
                await asyncio.sleep(0.05)
            assert await removed()
        assert (await svc.retry(job.id, REQUESTER)).plan is None
        again = await wait_job(svc, job.id, waiting_on(StepName.COPILOT_AUTHENTICATION))
        assert again.secret_available
    finally:
        await svc.close()


async def test_no_secret_text_in_logs_database_events_or_views(sandbox: Sandbox, service: ProvisioningService, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    job = await service.submit(await service.plan(agent_request(sandbox)), REQUESTER, APPROVER)
    await wait_job(service, job.id, waiting_on(StepName.COPILOT_AUTHENTICATION))
    secret = await service.take_secret(job.id, REQUESTER)
    from tests.fixtures.sandbox import sandbox_http

    async with sandbox_http(sandbox) as http:
        view = await service.get_job(job.id)
        await http.post(f"{sandbox.url}/_sandbox/bots/{view.agent.bot_id}/manual-authentication",
                        json={"client_id": view.step(StepName.APP_REGISTRATION).outputs["client_id"], "client_secret": secret})
    await service.confirm_step(job.id, StepName.COPILOT_AUTHENTICATION, REQUESTER)
    done = await run_to_completion(service, await service.get_job(job.id))
    assert done.status == JobStatus.COMPLETED
    texts = [r.getMessage() for r in caplog.records] + [json.dumps(done.to_dict())]
    texts += [json.dumps(e.to_dict()) for e in await service.events_after(0, 10_000)]
    texts += [json.dumps(a) for a in await service.audit_log(job.id)]
    assert not [t for t in texts if secret in t]
    assert oct(service.settings.secret_key_file.stat().st_mode & 0o777) == "0o600"
    if service.settings.database_url:  # PostgreSQL: every row of every table, as text
        async with service.store.db.read() as tx:
            tables = [r["tablename"] for r in await tx.fetchall("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
            for table in tables:
                rows = await tx.fetchall(f"SELECT * FROM {table}")
                assert secret not in json.dumps(rows, default=str), table
        return
    db = service.settings.state_db
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        if path.exists():
            assert secret.encode() not in path.read_bytes(), path
    assert oct(db.stat().st_mode & 0o777) == "0o600"
