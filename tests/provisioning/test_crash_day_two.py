"""kill -9 of a real `python -m provisioning` process during a rotation and during a removal, then `resume`: the
tenant ends exactly as after an uninterrupted run (one valid secret, the new one; no app registration left)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from provisioning import JobStatus, StepName
from sandbox import FaultSettings, Sandbox
from tests.fixtures.provisioning import make_service, service_env
from tests.fixtures.sandbox import sandbox_http

from .test_crash import run_watched


def request_file(sb: Sandbox, tmp: Path) -> Path:
    path = tmp / "request.json"
    path.write_text(json.dumps({
        "agent": {"environment_url": sb.env["DATAVERSE_URL"].split(",")[0], "schema_name": "cr6a1_contosoSupport"},
        "app_display_name": "Contoso Support auth", "credential": "client_secret", "require_secured_access": False,
        "connect_customer_service": False,
    }))
    return path


async def ours(sb: Sandbox) -> list[dict]:  # type: ignore[type-arg]
    async with sandbox_http(sb) as http:
        tenant = (await http.get(f"{sb.url}/_sandbox/state")).json()
    return [a for a in tenant["applications"] if (a["uniqueName"] or "").startswith("cps-auth-") and not a.get("deletedDateTime")]


async def drive(watcher, env: dict[str, str], command: list[str], guided: str, kill_at: StepName, seq: int) -> tuple[bool, int]:  # type: ignore[no-untyped-def]
    """Run a change with kill -9 when `kill_at` starts (in whichever process runs it), resume, do the guided step."""
    killed, seq = await run_watched(watcher, env, ["--as", "riley", *command, "--yes"], kill_at, seq)
    if killed:
        _, seq = await run_watched(watcher, env, ["resume", "--until-idle"], None, seq)
    job_id = next(j.id for j in await watcher.list_jobs() if j.request.purpose != "setup")  # the change's job
    hit, seq = await run_watched(watcher, env, ["--as", "riley", "confirm-step", job_id, guided, "--sandbox"], None if killed else kill_at, seq)
    killed = killed or hit
    _, seq = await run_watched(watcher, env, ["resume", "--until-idle"], None, seq)
    done = await watcher.get_job(job_id)
    assert done.status == JobStatus.COMPLETED, [(s.step.value, s.status.value, s.message) for s in done.steps]
    return killed, seq


async def set_up(watcher, env: dict[str, str], sb: Sandbox, tmp: Path) -> int:  # type: ignore[no-untyped-def]
    """A completed client-secret setup, made by the real command line; the last event seen."""
    _, seq = await run_watched(watcher, env, ["--as", "riley", "apply", str(request_file(sb, tmp)), "--yes"], None, 0)
    setup_job = (await watcher.list_jobs())[0].id
    _, seq = await run_watched(watcher, env, ["--as", "riley", "confirm-step", setup_job, "copilot_authentication", "--sandbox"], None, seq)
    return seq


@pytest.mark.parametrize("kill_at", [StepName.CLIENT_SECRET, StepName.PUBLISH, StepName.RETIRE_CREDENTIAL])
async def test_kill_9_during_a_rotation_then_resume(sandbox: Sandbox, tmp_path: Path, kill_at: StepName) -> None:
    await sandbox.set_faults(FaultSettings(replication_delay_s=0.2, latency_ms=60))
    env = service_env(sandbox, tmp_path, REPLICATION_SETTLE="0.4s")
    watcher = make_service(sandbox, tmp_path, run_worker=False)
    await watcher.start()
    try:
        seq = await set_up(watcher, env, sandbox, tmp_path)
        old = (await ours(sandbox))[0]["passwordCredentials"]
        killed, seq = await drive(watcher, env, ["rotate", "Contoso Support"], "copilot_authentication", kill_at, seq)
        assert killed, f"never saw {kill_at.value} start"
    finally:
        await watcher.close()
    apps = await ours(sandbox)
    assert len(apps) == 1, "still one app registration"
    now = apps[0]["passwordCredentials"]
    assert len(now) == 1 and now[0]["keyId"] != old[0]["keyId"], f"exactly one secret, the new one: {now}"


async def test_kill_9_during_a_removal_then_resume(sandbox: Sandbox, tmp_path: Path) -> None:
    await sandbox.set_faults(FaultSettings(replication_delay_s=0.2, latency_ms=60))
    env = service_env(sandbox, tmp_path, REPLICATION_SETTLE="0.4s")
    watcher = make_service(sandbox, tmp_path, run_worker=False)
    await watcher.start()
    try:
        seq = await set_up(watcher, env, sandbox, tmp_path)
        killed, seq = await drive(watcher, env, ["remove", "Contoso Support"], "agent_authentication_off", StepName.DELETE_APP_REGISTRATION, seq)
        assert killed
        assert [s.status for s in await watcher.setups()] == ["removed"]
    finally:
        await watcher.close()
    assert await ours(sandbox) == [], "the bot's app registration is gone"
