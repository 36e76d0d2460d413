"""The Microsoft 365 Agents Playground (a local Teams-like client): installed from tools/playground's lockfile,
started bound to 127.0.0.1 with telemetry off, pointed at the bot."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "playground"
CLI = TOOL / "node_modules" / "@microsoft" / "m365agentsplayground" / "cli.js"


class PlaygroundUnavailable(RuntimeError):
    pass


def ensure_installed() -> Path:
    """npm ci from the lockfile when it is missing. Blocking: call off the event loop."""
    if CLI.exists():
        return CLI
    npm, node = shutil.which("npm"), shutil.which("node")
    if not npm or not node:
        raise PlaygroundUnavailable("Node.js and npm are needed for the Agents Playground (apt-get install nodejs npm).")
    result = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--prefix", str(TOOL)], capture_output=True, text=True, timeout=300)
    if result.returncode != 0 or not CLI.exists():
        raise PlaygroundUnavailable(f"npm ci failed for the Agents Playground: {result.stderr.strip()[-500:]}")
    return CLI


class Playground:
    def __init__(self, bot_url: str, port: int) -> None:
        self.bot_url = bot_url
        self.port = port
        self.proc: asyncio.subprocess.Process | None = None
        self.workdir: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 30.0) -> None:
        cli = await asyncio.to_thread(ensure_installed)
        # It logs every message, invoke answers included (the sandbox's client secret, shown to the requester), under
        # its working directory: a private directory that is removed when it stops, so that log never outlives the run.
        workdir = self.workdir = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="agents-playground-"))
        env = {
            **os.environ,
            "NODE_OPTIONS": f"--require {TOOL / 'loopback.js'}",
            "APPLICATION_INSIGHTS_NO_STATSBEAT": "true",
            "TEAMSAPPTESTER_BROWSER": "none",
        }
        self.proc = await asyncio.create_subprocess_exec(
            shutil.which("node") or "node", str(cli), "-e", self.bot_url, "-c", "msteams", "-p", str(self.port), "--disable-telemetry",
            env=env, cwd=workdir, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )
        assert self.proc.stdout is not None
        try:
            while True:
                line = (await asyncio.wait_for(self.proc.stdout.readline(), timeout)).decode(errors="replace")
                if not line:
                    raise PlaygroundUnavailable("the Agents Playground exited while starting")
                if "Listening on" in line:
                    self.port = int(line.strip().rsplit(" ", 1)[-1])  # it picks another port when the asked one is taken
                    break
        except asyncio.TimeoutError:
            await self.stop()
            raise PlaygroundUnavailable(f"the Agents Playground did not start within {timeout:.0f} s") from None
        asyncio.ensure_future(self._drain())

    async def _drain(self) -> None:
        if self.proc and self.proc.stdout:
            while await self.proc.stdout.readline():
                pass

    async def stop(self) -> None:
        if self.proc and self.proc.returncode is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except asyncio.TimeoutError:
                os.killpg(self.proc.pid, signal.SIGKILL)
                await self.proc.wait()
        if self.workdir is not None:
            await asyncio.to_thread(shutil.rmtree, self.workdir, True)
            self.workdir = None
