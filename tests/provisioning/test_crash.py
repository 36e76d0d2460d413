"""kill -9 of a real `python -m provisioning` process at each step boundary, then `resume`: the tenant ends
exactly as after an uninterrupted run (one app registration, one secret, the reminder once)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from provisioning import EventKind, JobStatus, StepName
from sandbox import FaultSettings, Sandbox
from tests.fixtures.provisioning import make_service, service_env
from tests.fixtures.sandbox import sandbox_http

ROOT = Path(__file__).resolve().parents[2]


async def cli(env: dict[str, str], *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "provisioning", *args, cwd=ROOT, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )


def request_file(sb: Sandbox, tmp: Path) -> Path:
    path = tmp / "request.json"
    path.write_text(json.dumps({
        "agent": {"environment_url": sb.env["DATAVERSE_URL"].split(",")[0], "schema_name": "cr6a1_contosoSupport"},
        "app_display_name": "Contoso Support auth", "create_service_principal": True, "credential": "client_secret",
    }))
    return path


async def run_watched(watcher, env: dict[str, str], args: list[str], kill_at: StepName | None, seq: int) -> tuple[bool, int]:  # type: ignore[no-untyped-def]
    """Run one CLI command; kill -9 it when it starts `kill_at`. Returns (killed, last event seq)."""
    proc = await cli(env, *args)
    waiter = asyncio.ensure_future(proc.wait())
    killed = False
    while not waiter.done():
        for event in await watcher.wait_for_events(seq, 0.05):
            seq = event.seq
            if not killed and kill_at is not None and event.kind == EventKind.STEP_STARTED and event.step == kill_at:
                await asyncio.sleep(0.03)  # inside the step, mid-request
                proc.send_signal(signal.SIGKILL)
                killed = True
        await asyncio.sleep(0)
    out, err = await proc.communicate()
    if not killed:
        assert proc.returncode in (0, 5, 6), (args, proc.returncode, out.decode()[-1500:], err.decode()[-1500:])
    return killed, seq


@pytest.mark.parametrize("kill_at", [StepName.APP_REGISTRATION, StepName.CLIENT_SECRET, StepName.SERVICE_PRINCIPAL, StepName.PUBLISH])
async def test_kill_9_at_a_step_then_resume(sandbox: Sandbox, tmp_path: Path, kill_at: StepName) -> None:
    await sandbox.set_faults(FaultSettings(replication_delay_s=0.2, latency_ms=60))
    env = service_env(sandbox, tmp_path, REPLICATION_SETTLE="0.4s")
    watcher = make_service(sandbox, tmp_path, run_worker=False)
    await watcher.start()
    try:
        killed, seq = await run_watched(watcher, env, ["--as", "riley", "apply", str(request_file(sandbox, tmp_path)), "--yes"], kill_at, 0)
        job_id = (await watcher.list_jobs())[0].id
        pending = [kill_at] if not killed else []
        if killed:
            _, seq = await run_watched(watcher, env, ["resume", "--until-idle"], None, seq)
        for step in ("copilot_authentication", "secured_access", "customer_service_connection"):
            hit, seq = await run_watched(watcher, env, ["--as", "riley", "confirm-step", job_id, step, "--sandbox"], pending[0] if pending else None, seq)
            if hit:
                killed, pending = True, []
                _, seq = await run_watched(watcher, env, ["resume", "--until-idle"], None, seq)
        assert killed, f"never saw {kill_at.value} start"
        await run_watched(watcher, env, ["resume", "--until-idle"], None, seq)
        done = await watcher.get_job(job_id)
        assert done.status == JobStatus.COMPLETED, [(s.step.value, s.status.value, s.message) for s in done.steps]
        events = [e.kind for e in await watcher.events_after(0, 10_000)]
    finally:
        await watcher.close()
    async with sandbox_http(sandbox) as http:
        tenant = (await http.get(f"{sandbox.url}/_sandbox/state")).json()
    ours = [a for a in tenant["applications"] if a["uniqueName"] and a["uniqueName"].startswith("cps-auth-")]
    assert len(ours) == 1, "exactly one app registration"
    assert len(ours[0]["passwordCredentials"]) == 1, f"no orphan secrets: {ours[0]['passwordCredentials']}"
    assert len([sp for sp in tenant["service_principals"] if sp["appId"] == ours[0]["appId"]]) == 1
    assert events.count(EventKind.REMINDER_DUE) == 1 and events.count(EventKind.JOB_COMPLETED) == 1


async def test_two_workers_on_one_database_never_run_a_job_twice(sandbox: Sandbox, tmp_path: Path) -> None:
    from tests.fixtures.provisioning import agent_request

    from .helpers import APPROVER, REQUESTER, wait_job, waiting_on

    await sandbox.set_faults(FaultSettings(replication_delay_s=0, latency_ms=30))
    first, second = make_service(sandbox, tmp_path), make_service(sandbox, tmp_path)
    await first.start()
    await second.start()
    try:
        jobs = [await first.submit(await first.plan(agent_request(sandbox, schema=s, app_display_name=f"{s} auth", connect_customer_service=False)), REQUESTER, APPROVER)
                for s in ("cr6a1_contosoSupport", "cr6a1_contosoReturnsWarranty", "cr6a1_contosoHrHelpdesk")]
        for job in jobs:
            await wait_job(second, job.id, waiting_on(StepName.COPILOT_AUTHENTICATION))
        starts = [(e.job_id, e.step) for e in await first.events_after(0, 10_000) if e.kind == EventKind.STEP_STARTED]
    finally:
        await first.close()
        await second.close()
    assert len(starts) == len(set(starts)), "a step was started twice"
    async with sandbox_http(sandbox) as http:
        tenant = (await http.get(f"{sandbox.url}/_sandbox/state")).json()
    ours = [a for a in tenant["applications"] if (a["uniqueName"] or "").startswith("cps-auth-")]
    assert len(ours) == 3 and all(len(a["passwordCredentials"]) == 1 for a in ours)
