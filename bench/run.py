"""Benchmark: four bots side by side, interleaved in one run.

    python -m bench.run [--quick] [--rounds N] [--out bench/results]

Bots: `bare` (a bare aiohttp handler: the limit), `echo` (Microsoft's stock botbuilder echo bot: the peer), and Copilot
Setup Bot on each storage backend, running turns of its setup dialog against the sandbox: `setup-sqlite` (STATE_DB, a
SQLite file) and `setup-postgres` (DATABASE_URL to a throwaway PostgreSQL server this run starts, and stops at the end).
For each concurrency (1, 16, 64 conversations) every bot is measured in turn, round-robin, and the whole sweep is
repeated `--rounds` times, so machine noise hits all four alike; each figure is the median over the rounds. Each bot
runs in its own process; the load comes from another process (bench.loadgen). Reported per bot and concurrency:
turns/s, p50/p99 latency, CPU per turn (the bot's, plus its PostgreSQL server's), RSS and open descriptors; cold start
(process start → first 2xx on /healthz, the median of several interleaved starts) and first turn (process start →
first message answered, its reply received), beside `echo-stack` (bench/bots/echo_stack.py: the echo bot after
importing the rest of the prescribed stack, the floor for a cold start); the time from `/setup copilot` to its card;
RSS after 1,000 conversations; the CPU each bot uses while idle (all left alone at once, 15 s); the provisioning apply
time on each backend. Results go to `<out>/results.json` and `<out>/results.md`, with each target's pass/fail per backend.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import output
from bench.loadgen import SCRIPTS
from bench.pg import BenchPostgres, bench_postgres
from bench.procs import LOCAL, PY, ROOT, BotProcess, load, median, start_connector, start_sandbox, stop_all
from bench.report import markdown, verdicts

MEDIAN_KEYS = ("turns_per_s", "p50_ms", "p99_ms", "mean_ms", "cpu_ms_per_turn", "server_cpu_ms_per_turn", "total_cpu_ms_per_turn")


def bots(sandbox_env: dict[str, str], state_dir: Path, pg: BenchPostgres) -> list[BotProcess]:
    sqlite_dir, pg_dir = state_dir / "sqlite", state_dir / "postgres"
    sqlite_dir.mkdir()
    pg_dir.mkdir()
    sqlite_env = {**sandbox_env, "STATE_DB": str(sqlite_dir / "state.db"), "SECRET_KEY_FILE": str(sqlite_dir / "secret.key")}
    pg_env = {**sandbox_env, "DATABASE_URL": pg.database("bench_setup"), "SECRET_KEY_FILE": str(pg_dir / "secret.key")}
    return [
        BotProcess("bare", [PY, "-m", "bench.bots.bare"], "echo", log=state_dir / "bare.log"),
        BotProcess("echo", [PY, "-m", "bench.bots.echo"], "echo", log=state_dir / "echo.log"),
        BotProcess("setup-sqlite", [PY, "app.py"], "setup", env=sqlite_env, log=state_dir / "setup-sqlite.log"),
        BotProcess("setup-postgres", [PY, "app.py"], "setup", env=pg_env, log=state_dir / "setup-postgres.log",
                   server_cpu=pg.cpu_seconds),
    ]


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over the rounds; counts summed; every round kept under `rounds`."""
    out: dict[str, Any] = {k: statistics.median(r[k] for r in runs) for k in MEDIAN_KEYS}
    out["turns"] = sum(r["turns"] for r in runs)
    out["errors"] = {k: sum(r["errors"].get(k, 0) for r in runs) for k in {k for r in runs for k in r["errors"]}}
    out["turns_without_reply"] = sum(r["turns_without_reply"] for r in runs)
    out["rss_mb"] = max(r["rss_mb"] for r in runs)
    out["fds_before"] = runs[0]["fds_before"]
    out["fds_after"] = max(r["fds_after"] for r in runs)
    texts = {t for r in runs for t in r["by_text"]}
    out["by_text"] = {t: {q: statistics.median(r["by_text"][t][q] for r in runs if t in r["by_text"]) for q in ("p50_ms", "p99_ms")}
                      for t in texts}
    out["rounds"] = runs
    return out


def cold_starts(procs: list[BotProcess], starts: int, connector_url: str) -> dict[str, Any]:
    """Interleaved starts (bare, echo, setup-sqlite, setup-postgres, bare, ...): /healthz, then the first turn."""
    samples: dict[str, list[float]] = {p.name: [] for p in procs}
    firsts: dict[str, list[float]] = {p.name: [] for p in procs}
    cpu: dict[str, list[float]] = {p.name: [] for p in procs}
    for _ in range(starts):
        for p in procs:
            p.start(first_turn_to=connector_url)
            samples[p.name].append(p.cold_start_s)
            firsts[p.name].append(p.first_turn_s)
            cpu[p.name].append(p.first_turn_cpu_s)
            p.stop()
    return {"cold": {n: median(v) for n, v in samples.items()}, "cold_samples": samples,
            "first_turn": {n: median(v) for n, v in firsts.items()}, "first_turn_samples": firsts,
            "first_turn_cpu": {n: median(v) for n, v in cpu.items()}}


def idle(procs: list[BotProcess], settle_s: float, seconds: float) -> dict[str, dict[str, float]]:
    """Every bot left alone at once (after the load, so each is warm): CPU per second of its own, and of its database
    server's. What an instance costs while nobody talks to it."""
    time.sleep(settle_s)  # let whatever the last load left (replies, notifier passes) finish
    before = {p.name: p.sample() for p in procs}
    time.sleep(seconds)
    after = {p.name: p.sample() for p in procs}
    return {n: {"cpu_ms_per_s": (after[n][0] - before[n][0]) * 1000 / seconds,
                "server_cpu_ms_per_s": (after[n][1] - before[n][1]) * 1000 / seconds} for n in before}


def apply_bench(out: Path, runs: int, pg: BenchPostgres | None) -> dict[str, Any]:
    """bench.apply in its own process: SQLite files, or one fresh PostgreSQL database per setup (URLs in the environment,
    never on a command line)."""
    env = {**os.environ, **LOCAL}
    name = "apply-sqlite"
    if pg is not None:
        name = "apply-postgres"
        env["BENCH_APPLY_DATABASE_URLS"] = " ".join(pg.database(f"bench_apply_{i}") for i in range(runs))
    try:
        subprocess.run([PY, "-m", "bench.apply", "--latency-ms", "100", "--runs", str(runs), "--out", str(out), "--name", name],
                       cwd=ROOT, check=True, capture_output=True, env=env, timeout=120 * runs)
    except subprocess.CalledProcessError as exc:
        return {"error": f"bench.apply exited {exc.returncode}: {exc.stderr.decode(errors='replace')[-1500:]}"}
    except subprocess.TimeoutExpired:
        return {"error": f"bench.apply did not finish within {120 * runs} s"}
    result: dict[str, Any] = json.loads((out / f"{name}.json").read_text())
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer turns, one round: a smoke run")
    parser.add_argument("--rounds", type=int, default=0, help="sweeps over the concurrencies (default 3, 1 with --quick)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    turns = {1: 300, 16: 600, 64: 1000} if not args.quick else {1: 20, 16: 64, 64: 128}
    conversations = 200 if args.quick else 1000
    rounds = args.rounds or (1 if args.quick else 3)
    starts = 2 if args.quick else 5
    args.out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, bench_postgres() as pg:
        state = Path(tmp)
        sandbox, sandbox_env = start_sandbox(state)
        connector, connector_url = start_connector()
        procs = bots(sandbox_env, state, pg)
        results: dict[str, Any] = {p.name: {} for p in procs}
        try:
            floor = BotProcess("echo-stack", [PY, "-m", "bench.bots.echo_stack"], "echo", log=state / "echo-stack.log")
            results.update(cold_starts([*procs, floor], starts, connector_url))
            for p in procs:
                p.start()
            for p in procs:  # warm up each bot before measuring
                load(p, 4, 40, "warmup")
            sweeps: dict[str, dict[int, list[dict[str, Any]]]] = {p.name: {c: [] for c in turns} for p in procs}
            for r in range(rounds):
                for conc, n in turns.items():
                    for p in procs:
                        sweeps[p.name][conc].append(load(p, conc, n, f"r{r}c{conc}"))
            for p in procs:
                results[p.name] = {conc: combine(runs) for conc, runs in sweeps[p.name].items()}
            results["idle"] = idle(procs, 2.0, 4.0 if args.quick else 15.0)
            results["conversations"] = {}
            for p in procs:  # 1,000 distinct conversations, 64 at a time, then the RSS
                results["conversations"][p.name] = load(p, 64, conversations * len(SCRIPTS[p.script]), "many", fresh=True)
        finally:
            stop_all(procs, connector, sandbox)
        apply_runs = 1 if args.quick else 3
        results["apply"] = {"sqlite": apply_bench(args.out, apply_runs, None), "postgres": apply_bench(args.out, apply_runs, pg)}
    results["rounds"] = rounds
    results["date"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    load_avg = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()} (load average after: {load_avg})"
    checked = verdicts(results)
    output.write(args.out, "results", {**results, "targets": {f"{b}: {n}": ok for b, n, ok, _ in checked}}, markdown(results, checked))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
