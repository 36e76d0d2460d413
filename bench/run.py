"""Benchmark: three bots side by side, interleaved in one run.

    python -m bench.run [--quick] [--out bench/results]

Bots: `bare` (a bare aiohttp handler: the limit), `echo` (Microsoft's stock botbuilder echo bot: the peer) and
`setup` (Copilot Setup Bot running turns of its setup dialog with SQLite state, against the sandbox). For each
concurrency (1, 16, 64 conversations) every bot is measured in turn, round-robin, so machine noise hits all three
alike. Each bot runs in its own process; the load comes from another process (bench.loadgen). Reported per bot and
concurrency: turns/s, p50/p99 latency, CPU per turn, RSS and open descriptors; cold start (process start → first
2xx on /healthz, the median of several interleaved starts) and first turn (process start → first message answered,
its reply received); the time from `/setup copilot` to its card; RSS after 1,000 conversations. Results go to
`<out>/results.json` and `<out>/results.md`, with each target's pass/fail.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import psutil

from bench.apply import markdown as apply_markdown
from bench.loadgen import SCRIPTS, activity

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class BotProcess:
    name: str
    argv: list[str]
    script: str
    env: dict[str, str] = field(default_factory=dict)
    log: Path | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    cold_start_s: float = 0.0
    first_turn_s: float = 0.0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/messages"

    def start(self, first_turn_to: str = "") -> None:
        self.port = free_port()
        env = {**os.environ, **self.env, "PORT": str(self.port), "HOST": "127.0.0.1", "NO_PROXY": "127.0.0.1,localhost"}
        started = time.perf_counter()
        log = open(self.log, "ab") if self.log else subprocess.DEVNULL  # never a pipe nobody reads: it fills and blocks the bot
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)
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

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()

    def sample(self) -> tuple[float, int, int]:
        assert self.proc
        p = psutil.Process(self.proc.pid)
        cpu = p.cpu_times()
        return cpu.user + cpu.system, p.memory_info().rss, p.num_fds()


def load(bot: BotProcess, conversations: int, turns: int, run_id: str, fresh: bool = False) -> dict[str, Any]:
    cpu0, _, fds0 = bot.sample()
    out = subprocess.run(
        [PY, "-m", "bench.loadgen", "--url", bot.url, "--conversations", str(conversations), "--turns", str(turns),
         "--script", bot.script, "--run-id", run_id, *(["--fresh"] if fresh else [])],
        cwd=ROOT, capture_output=True, text=True, check=True, env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"},
    )
    result: dict[str, Any] = json.loads(out.stdout)
    cpu1, rss, fds1 = bot.sample()
    result["cpu_ms_per_turn"] = (cpu1 - cpu0) * 1000 / max(1, result["turns"])
    result["rss_mb"] = rss / 2**20
    result["fds_before"] = fds0
    result["fds_after"] = fds1
    return result


def bots(sandbox_env: dict[str, str], state_dir: Path) -> list[BotProcess]:
    setup_env = {**sandbox_env, "STATE_DB": str(state_dir / "state.db"), "SECRET_KEY_FILE": str(state_dir / "secret.key")}
    return [
        BotProcess("bare", [PY, "-m", "bench.bots.bare"], "echo", log=state_dir / "bare.log"),
        BotProcess("echo", [PY, "-m", "bench.bots.echo"], "echo", log=state_dir / "echo.log"),
        BotProcess("setup", [PY, "app.py"], "setup", env=setup_env, log=state_dir / "setup.log"),
    ]


def start_sandbox(state_dir: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
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
    """The fake Bot Connector for first turns (load runs bring their own, in the load generator's process)."""

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


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if len(ordered) % 2 else (ordered[len(ordered) // 2 - 1] + ordered[len(ordered) // 2]) / 2


TARGETS = [
    ("setup turns/s ≥ 3× echo at 16", lambda r: r["setup"][16]["turns_per_s"] >= 3 * r["echo"][16]["turns_per_s"]),
    ("setup turns/s ≥ 3× echo at 64", lambda r: r["setup"][64]["turns_per_s"] >= 3 * r["echo"][64]["turns_per_s"]),
    ("setup CPU per turn ≤ 3 ms", lambda r: max(r["setup"][c]["cpu_ms_per_turn"] for c in r["setup"]) <= 3.0),
    ("setup p99 at 64 ≤ 1/3 of echo's", lambda r: r["setup"][64]["p99_ms"] <= r["echo"][64]["p99_ms"] / 3),
    ("setup open descriptors flat under load", lambda r: r["setup"][64]["fds_after"] <= r["setup"][1]["fds_before"] + 8),
    ("setup cold start ≤ 1.2× echo's", lambda r: r["cold"]["setup"] <= 1.2 * r["cold"]["echo"]),
    ("setup RSS ≤ 100 MB after 1,000 conversations", lambda r: r["conversations"]["setup"]["rss_mb"] <= 100),
    ("provisioning apply ≤ 1.2× its critical path", lambda r: r["apply"]["ratio"] <= 1.2),
]


def markdown(results: dict[str, Any], verdicts: list[tuple[str, bool]]) -> str:
    lines = [
        f"Measured {results['date']} on {results['machine']}.",
        "",
        "| bot | conv | turns/s | p50 ms | p99 ms | CPU ms/turn | RSS MB | fds | ×echo | ×limit |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in ("bare", "echo", "setup"):
        for conc, r in results[name].items():
            echo = results["echo"][conc]["turns_per_s"] or 1
            bare = results["bare"][conc]["turns_per_s"] or 1
            lines.append(
                f"| {name} | {conc} | {r['turns_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                f"{r['cpu_ms_per_turn']:.2f} | {r['rss_mb']:.0f} | {r['fds_after']} | "
                f"{r['turns_per_s'] / echo:.2f} | {r['turns_per_s'] / bare:.2f} |"
            )
    lines += ["", "| bot | cold start s (median of starts) | first turn s | RSS MB after 1,000 conversations | errors |", "|---|---|---|---|---|"]
    for name in ("bare", "echo", "setup"):
        c = results["conversations"][name]
        lines.append(f"| {name} | {results['cold'][name]:.3f} ({', '.join(f'{v:.2f}' for v in results['cold_samples'][name])}) | "
                     f"{results['first_turn'][name]:.3f} | {c['rss_mb']:.0f} ({c['conversations_used']} conversations) | {sum(c['errors'].values())} |")
    card = {conc: r["by_text"].get("/setup copilot", {}) for conc, r in results["setup"].items()}
    lines += ["", "| `/setup copilot` → its card (one turn, reply included) | p50 ms | p99 ms |", "|---|---|---|"]
    lines += [f"| {conc} conversation{'s' if conc != 1 else ''} | {v.get('p50_ms', 0):.1f} | {v.get('p99_ms', 0):.1f} |" for conc, v in card.items()]
    lines += ["", *apply_markdown(results["apply"]).splitlines()]
    lines += ["", "| target | result |", "|---|---|"]
    lines += [f"| {name} | {'pass' if ok else 'FAIL'} |" for name, ok in verdicts]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer turns, for a smoke run")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    turns = {1: 300, 16: 600, 64: 1000} if not args.quick else {1: 20, 16: 64, 64: 128}
    conversations = 200 if args.quick else 1000

    starts = 2 if args.quick else 5
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        state = Path(tmp)
        sandbox, sandbox_env = start_sandbox(state)
        connector, connector_url = start_connector()
        procs = bots(sandbox_env, state)
        results: dict[str, Any] = {p.name: {} for p in procs}
        samples: dict[str, list[float]] = {p.name: [] for p in procs}
        firsts: dict[str, list[float]] = {p.name: [] for p in procs}
        try:
            for _ in range(starts):  # interleaved: bare, echo, setup, bare, ...
                for p in procs:
                    p.start(first_turn_to=connector_url)
                    samples[p.name].append(p.cold_start_s)
                    firsts[p.name].append(p.first_turn_s)
                    p.stop()
            results["cold"] = {name: median(v) for name, v in samples.items()}
            results["cold_samples"] = samples
            results["first_turn"] = {name: median(v) for name, v in firsts.items()}
            for p in procs:
                p.start()
            for p in procs:  # warm up each bot before measuring
                load(p, 4, 40, "warmup")
            for conc, n in turns.items():
                for p in procs:
                    results[p.name][conc] = load(p, conc, n, f"c{conc}")
            results["conversations"] = {}
            for p in procs:  # 1,000 distinct conversations, 64 at a time, then the RSS
                results["conversations"][p.name] = load(p, 64, conversations * len(SCRIPTS[p.script]), "many", fresh=True)
        finally:
            for p in procs:
                p.stop()
            connector.shutdown()
            sandbox.terminate()
            sandbox.wait(10)
    apply_runs = "1" if args.quick else "3"
    subprocess.run([PY, "-m", "bench.apply", "--latency-ms", "100", "--runs", apply_runs, "--out", str(args.out)], cwd=ROOT, check=True,
                   capture_output=True, env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"})
    results["apply"] = json.loads((args.out / "apply.json").read_text())
    results["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    verdicts = [(name, bool(check(results))) for name, check in TARGETS]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps({**results, "targets": dict(verdicts)}, indent=2))
    table = markdown(results, verdicts)
    (args.out / "results.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
