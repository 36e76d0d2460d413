"""The processes a benchmark run starts: the bots (each its own process), the sandbox, and the fake Bot Connector that
answers first turns (load runs bring their own, in the load generator's process)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import psutil

from bench.loadgen import SCRIPTS, activity

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
LOCAL = {"NO_PROXY": "127.0.0.1,localhost"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class BotProcess:
    """One bot: how to start it, which load script it answers, and (for a bot with a database server) the CPU seconds
    that server has spent so far, so a turn's cost includes it."""

    name: str
    argv: list[str]
    script: str
    env: dict[str, str] = field(default_factory=dict)
    log: Path | None = None
    server_cpu: Callable[[], float] | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    cold_start_s: float = 0.0
    first_turn_s: float = 0.0
    first_turn_cpu_s: float = 0.0  # CPU the process (and its children) had used when the first turn was answered
    spawned_at: float = 0.0  # time.monotonic() (CLOCK_MONOTONIC: comparable with the child's clock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/messages"

    def start(self, first_turn_to: str = "", extra_env: dict[str, str] | None = None, argv: list[str] | None = None) -> None:
        """Start the process and wait for /healthz (cold start); then, if asked, the first turn answered."""
        self.port = free_port()
        env = {**os.environ, **self.env, **(extra_env or {}), "PORT": str(self.port), "HOST": "127.0.0.1", **LOCAL}
        started = time.perf_counter()
        self.spawned_at = time.monotonic()
        if self.log:  # a file, never a pipe nobody reads: it fills and blocks the bot
            with open(self.log, "ab") as log:
                self.proc = subprocess.Popen(argv or self.argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
        else:
            self.proc = subprocess.Popen(argv or self.argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = started + 60
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                err = self.log.read_text(errors="replace")[-2000:] if self.log else ""
                raise RuntimeError(f"{self.name} exited during start: {err}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1) as r:
                    if 200 <= r.status < 300:
                        self.cold_start_s = time.perf_counter() - started
                        if first_turn_to:
                            self._first_turn(first_turn_to)
                            self.first_turn_s = time.perf_counter() - started
                            self.first_turn_cpu_s = self._cpu_seconds()
                        return
            except OSError:
                time.sleep(0.005)
        raise RuntimeError(f"{self.name} did not answer /healthz within 60 s")

    def _first_turn(self, service_url: str) -> None:
        """Post the script's first message and wait for the answer (the bot replies inside the turn)."""
        body = json.dumps(activity(SCRIPTS[self.script][0], f"a:first-{uuid.uuid4().hex[:8]}", 1, service_url)).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as r:
            if not 200 <= r.status < 300:
                raise RuntimeError(f"{self.name}: first turn answered {r.status}")

    def _cpu_seconds(self) -> float:
        """User + system CPU of the process and its descendants (a profiler's child, say): unlike wall time, barely
        moved by other work on the machine."""
        assert self.proc
        main = psutil.Process(self.proc.pid)
        total = 0.0
        for p in [main, *main.children(recursive=True)]:
            try:
                t = p.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += t.user + t.system
        return total

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def sample(self) -> tuple[float, float, int, int]:
        """CPU seconds of the bot process, of its database server (0 without one), its RSS bytes and open descriptors."""
        assert self.proc
        p = psutil.Process(self.proc.pid)
        cpu = p.cpu_times()
        server = self.server_cpu() if self.server_cpu else 0.0
        return cpu.user + cpu.system, server, p.memory_info().rss, p.num_fds()


def load(bot: BotProcess, conversations: int, turns: int, run_id: str, fresh: bool = False) -> dict[str, Any]:
    """One load run from another process (bench.loadgen); the bot's (and its database server's) CPU per turn."""
    cpu0, server0, _, fds0 = bot.sample()
    out = subprocess.run(
        [PY, "-m", "bench.loadgen", "--url", bot.url, "--conversations", str(conversations), "--turns", str(turns),
         "--script", bot.script, "--run-id", run_id, *(["--fresh"] if fresh else [])],
        cwd=ROOT, capture_output=True, text=True, check=True, env={**os.environ, **LOCAL},
    )
    result: dict[str, Any] = json.loads(out.stdout)
    cpu1, server1, rss, fds1 = bot.sample()
    turns_done = max(1, result["turns"])
    result["cpu_ms_per_turn"] = (cpu1 - cpu0) * 1000 / turns_done
    result["server_cpu_ms_per_turn"] = (server1 - server0) * 1000 / turns_done
    result["total_cpu_ms_per_turn"] = result["cpu_ms_per_turn"] + result["server_cpu_ms_per_turn"]
    result["rss_mb"] = rss / 2**20
    result["fds_before"] = fds0
    result["fds_after"] = fds1
    return result


def start_sandbox(state_dir: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    """The emulated Microsoft cloud (python -m sandbox); the .env lines it prints."""
    proc = subprocess.Popen(
        [PY, "-m", "sandbox", "--state", str(state_dir / "sandbox.db"), "--cert-dir", str(state_dir / "certs")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    env: dict[str, str] = {}
    assert proc.stdout
    for line in proc.stdout:
        if "=" in line:
            key, value = line.strip().split("=", 1)
            env[key] = value
        if "SANDBOX_URL" in env and "REQUESTS_CA_BUNDLE" in env and "DATAVERSE_URL" in env:
            break
    return proc, env


class _Connector(BaseHTTPRequestHandler):
    """The fake Bot Connector for first turns."""

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        body = json.dumps({"id": uuid.uuid4().hex}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_PUT = _answer

    def log_message(self, *_args: Any) -> None:
        pass


def start_connector() -> tuple[ThreadingHTTPServer, str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Connector)
    Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def stop_all(procs: list[BotProcess], connector: ThreadingHTTPServer, sandbox: subprocess.Popen[str]) -> None:
    """Stop the bots, the fake Bot Connector and the sandbox a run started."""
    for p in procs:
        p.stop()
    connector.shutdown()
    sandbox.terminate()
    sandbox.wait(10)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
