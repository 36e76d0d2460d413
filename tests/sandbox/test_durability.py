"""The sandbox keeps its state in SQLite: a restarted sandbox still has what was created; the CLI works."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from sandbox import Sandbox
from tests.fixtures.sandbox import sandbox_http, sandbox_options

from .helpers import APP_BODY, graph_url, token

EXPECTED = ["AZURE_AUTHORITY_HOST", "GRAPH_ENDPOINT", "DATAVERSE_URL", "PROVISIONING_TENANT_ID", "PROVISIONING_CLIENT_ID",
            "PROVISIONING_CLIENT_SECRET", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "SANDBOX_URL", "SANDBOX_PORTAL_URL"]


async def test_restart_keeps_tenant_state_and_ids(tmp_path: Path) -> None:
    first = Sandbox(sandbox_options(tmp_path))
    await first.start()
    async with sandbox_http(first) as http:
        app = (await http.post(graph_url(first, "applications"), json=APP_BODY, headers={"Authorization": f"Bearer {await token(first)}"})).json()
    before = await first.snapshot()
    await first.stop()

    second = Sandbox(sandbox_options(tmp_path))
    await second.start()
    try:
        assert second.env["PROVISIONING_CLIENT_ID"] == first.env["PROVISIONING_CLIENT_ID"]
        assert second.env["PROVISIONING_TENANT_ID"] == first.env["PROVISIONING_TENANT_ID"]
        assert second.env["PROVISIONING_CLIENT_SECRET"] != first.env["PROVISIONING_CLIENT_SECRET"]  # rotated, never stored
        after = await second.snapshot()
        assert [b["botid"] for b in after["environments"]["contoso"]["bots"]] == [b["botid"] for b in before["environments"]["contoso"]["bots"]]
        async with sandbox_http(second) as http:
            got = await http.get(graph_url(second, f"applications/{app['id']}"), headers={"Authorization": f"Bearer {await token(second)}"})
        assert got.status_code == 200 and got.json()["appId"] == app["appId"]
    finally:
        await second.stop()
    db = (tmp_path / "sandbox.db").read_bytes()
    assert first.env["PROVISIONING_CLIENT_SECRET"].encode() not in db
    assert oct((tmp_path / "sandbox.db").stat().st_mode & 0o777) == "0o600"


async def test_python_m_sandbox_prints_env_lines_and_stops_on_sigterm(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "sandbox", "--state", str(tmp_path / "s.db"), "--cert-dir", str(tmp_path / "certs"),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    lines: dict[str, str] = {}
    while len(lines) < len(EXPECTED):
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
        assert line, "sandbox exited before printing its configuration"
        name, _, value = line.partition("=")
        lines[name] = value
    assert list(lines) == EXPECTED
    assert all(v.startswith("https://127.0.0.1:") for k, v in lines.items() if k in ("AZURE_AUTHORITY_HOST", "GRAPH_ENDPOINT", "SANDBOX_URL"))
    assert lines["SANDBOX_PORTAL_URL"].startswith("http://127.0.0.1:")  # plain HTTP, for people's browsers
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 10) == 0
    assert proc.stderr is not None
    assert lines["PROVISIONING_CLIENT_SECRET"] not in (await proc.stderr.read()).decode()
