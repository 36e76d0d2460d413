"""Where Copilot Setup Bot's CPU goes under load, on each backend: a sampling profile of the bot process during a load
run, and what the PostgreSQL server saw.

    python -m bench.profile_load [--conversations 64] [--turns 2000] [--out bench/results]

For setup-sqlite and setup-postgres in turn: start the bot (configured as bench.run does), warm it up, then run the
load while py-spy samples the bot (on-CPU only, every thread). Reported: CPU per turn (bot, PostgreSQL server), the
PostgreSQL database's transactions per turn (pg_stat_database.xact_commit; an autocommit statement is one) and its
connections, and the functions with the most inclusive on-CPU time per turn. Writes `<out>/profile_load.json` and `.md`.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import output
from bench.pg import BenchPostgres, bench_postgres
from bench.procs import PY, ROOT, BotProcess, load, start_connector, start_sandbox, stop_all
from bench.pyspy import summarize

RATE = 250


def _db_stats(pg: BenchPostgres) -> tuple[int, int]:
    """Committed transactions and open connections of the bot's database."""
    with pg.server.admin() as conn:
        row = conn.execute("SELECT xact_commit, numbackends FROM pg_stat_database WHERE datname = 'bench_setup'").fetchone()
    assert row is not None
    return int(str(row[0])), int(str(row[1]))


def profiled_load(bot: BotProcess, pg: BenchPostgres, conversations: int, turns: int, out: Path) -> dict[str, Any]:
    spy = shutil.which("py-spy", path=str(Path(PY).parent)) or shutil.which("py-spy")
    if not spy:
        raise SystemExit("py-spy is not installed")
    assert bot.proc
    raw = out / f"profile-{bot.name}.pyspy.txt"
    xact0, _ = _db_stats(pg)
    recorder = subprocess.Popen([spy, "record", "--pid", str(bot.proc.pid), "--threads", "--nonblocking", "-r", str(RATE), "-f", "raw",
                                 "-o", str(raw)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.5)
    try:
        result = load(bot, conversations, turns, f"profile-{bot.name}")
    finally:
        recorder.send_signal(signal.SIGINT)  # py-spy writes what it sampled on Ctrl-C
        recorder.wait(30)
    xact1, backends = _db_stats(pg)
    threads = summarize(raw, RATE, top=60)
    per_turn = {g: [(k, round(v * 1000 / result["turns"], 3)) for k, v in d["top"]] for g, d in threads.items()}
    return {"turns": result["turns"], "turns_per_s": result["turns_per_s"], "p99_ms": result["p99_ms"],
            "cpu_ms_per_turn": result["cpu_ms_per_turn"], "server_cpu_ms_per_turn": result["server_cpu_ms_per_turn"],
            "xact_per_turn": (xact1 - xact0) / max(1, result["turns"]) if bot.server_cpu else None,
            "connections": backends if bot.server_cpu else None,
            "sampled_cpu_ms_per_turn": {g: d["wall_s"] * 1000 / result["turns"] for g, d in threads.items()},
            "top_ms_per_turn": per_turn, "raw": raw.name}


def markdown(results: dict[str, Any]) -> str:
    lines = ["| bot | turns/s | p99 ms | CPU ms/turn bot | + server | transactions/turn (server) | connections |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['turns_per_s']:.0f} | {r['p99_ms']:.0f} | {r['cpu_ms_per_turn']:.2f} | {r['server_cpu_ms_per_turn']:.2f} | "
                     f"{'' if r['xact_per_turn'] is None else format(r['xact_per_turn'], '.1f')} | {r['connections'] or ''} |")
    for name, r in results.items():
        for group, top in r["top_ms_per_turn"].items():
            keep = [(k, v) for k, v in top if not k.startswith(("_bootstrap", "Thread.", "<module>", "_run_module_as_main", "_run_code",
                                                                "main (app.py", "run_app", "BaseEventLoop.run_", "Runner.run", "run (asyncio"))]
            lines.append(f"\n**{name}**, {group} thread(s), on-CPU ms per turn, inclusive: " + "; ".join(f"`{k}` {v:.2f}" for k, v in keep[:30]))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conversations", type=int, default=64)
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    from bench.run import bots

    with tempfile.TemporaryDirectory(prefix="bench-prof-") as tmp, bench_postgres() as pg:
        state = Path(tmp)
        sandbox, sandbox_env = start_sandbox(state)
        connector, _url = start_connector()
        procs = [p for p in bots(sandbox_env, state, pg) if p.name.startswith("setup-")]
        results: dict[str, Any] = {}
        try:
            for p in procs:
                p.start()
                load(p, 4, 40, "warmup")
                results[p.name] = profiled_load(p, pg, args.conversations, args.turns, args.out)
                p.stop()
        finally:
            stop_all(procs, connector, sandbox)
    output.write(args.out, "profile_load", results, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
