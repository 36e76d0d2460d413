"""The day-two verbs of the real `python -m provisioning` process: status lists the setups, watch exits 7 when one
needs attention and says what changed, keep records it (and watch exits 0 again)."""

from __future__ import annotations

from pathlib import Path

from sandbox import Sandbox
from tests.fixtures.provisioning import service_env
from tests.fixtures.sandbox import sandbox_http

from .test_crash import cli
from .test_crash_day_two import ours, request_file


async def run(env: dict[str, str], *args: str) -> tuple[int, str]:
    proc = await cli(env, "--as", "riley", *args)
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode() + err.decode()


async def test_status_watch_and_keep_from_the_command_line(sandbox: Sandbox, tmp_path: Path) -> None:
    env = service_env(sandbox, tmp_path)
    code, text = await run(env, "apply", str(request_file(sandbox, tmp_path)), "--yes")
    assert code == 5, text  # waiting for the person: authenticate manually
    job_id = text.split("Job ", 1)[1].split(":", 1)[0]
    code, text = await run(env, "confirm-step", job_id, "copilot_authentication", "--sandbox")
    assert code == 0, text
    code, text = await run(env, "status")
    assert code == 0 and "Setup of 'Contoso Support'" in text and "credential: client_secret, expires" in text, text
    code, text = await run(env, "watch")
    assert code == 0 and "as approved" in text, text
    app = (await ours(sandbox))[0]
    async with sandbox_http(sandbox) as http:
        r = await http.patch(f"{sandbox.url}/_sandbox/applications/{app['appId']}", json={"signInAudience": "AzureADMyOrg"})
        assert r.status_code == 200, r.text
    code, text = await run(env, "watch")
    assert code == 7, text
    assert "CHANGED since approval" in text and "signInAudience: approved AzureADMultipleOrgs; now AzureADMyOrg" in text, text
    code, text = await run(env, "keep", "Contoso Support")
    assert code == 0 and "as approved" in text, text
    code, text = await run(env, "watch")
    assert code == 0, text
    code, text = await run(env, "rotate", "no such agent", "--yes")
    assert code == 1 and "No setup matches 'no such agent'" in text and "'Contoso Support'" in text, text
