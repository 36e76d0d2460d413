"""Where a cold start's first answered turn goes: Copilot Setup Bot on each backend beside the echo bot.

    python -m bench.coldstart [--starts 5] [--no-what-ifs] [--out bench/results]

Four measurements, each per bot (echo, setup-sqlite, setup-postgres), starts interleaved:

- the timeline, unprofiled: process start → /healthz answers → the first turn answered → a second turn answered
  (a second conversation, so what the first turn paid once shows as the difference);
- imports: the bot run under `python -X importtime` through its first turn (the card models a worker thread imports
  and whatever the turn imports lazily included), self time summed by top-level package;
- a wall-clock sampling profile (py-spy, `--idle --threads`, every thread, from process start to the answered first
  turn): where the main thread's and the worker threads' time went, inclusive, by function;
- what-ifs (bench/variants/setup.py): the unchanged app.py started with one start-up change applied from outside
  (card models before listening, no card warm-up thread, the agent list warmed at start, ...), interleaved with the
  echo bot, `--starts` starts each: what each change would do to /healthz and to the first turn.

Writes `<out>/coldstart.json` and `<out>/coldstart.md`.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.request
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import psutil

from bench import output
from bench.loadgen import SCRIPTS, activity
from bench.pg import bench_postgres
from bench.procs import PY, ROOT, BotProcess, start_connector, start_sandbox, stop_all
from bench.pyspy import summarize
from bench.variants.setup import VARIANTS

PYSPY_RATE = 500  # samples per second per thread
_IMPORT = re.compile(r"^import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)")


def _turn(bot: BotProcess, service_url: str) -> float:
    body = json.dumps(activity(SCRIPTS[bot.script][0], f"a:cold-{uuid.uuid4().hex[:8]}", 2, service_url)).encode()
    request = urllib.request.Request(bot.url, data=body, headers={"Content-Type": "application/json"})
    started = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as r:
        r.read()
    return time.perf_counter() - started


def _stop_profiled(bot: BotProcess) -> None:
    """Ends the profiled bot (the profiler's child), so the profiler writes its samples and exits."""
    assert bot.proc
    for child in psutil.Process(bot.proc.pid).children():
        child.terminate()
    bot.proc.wait(30)


def timeline(bot: BotProcess, connector_url: str) -> dict[str, float]:
    bot.start(first_turn_to=connector_url)
    try:
        second = _turn(bot, connector_url)
    finally:
        bot.stop()
    return {"healthz_s": bot.cold_start_s, "first_turn_s": bot.first_turn_s,
            "first_turn_after_healthz_s": bot.first_turn_s - bot.cold_start_s, "second_turn_s": second}


def import_times(bot: BotProcess, connector_url: str, log: Path) -> dict[str, Any]:
    """Self time of every module imported from process start to the first answered turn, summed by top-level package."""
    log.write_bytes(b"")
    saved, bot.log = bot.log, log
    try:
        bot.start(first_turn_to=connector_url, argv=[PY, "-X", "importtime", *bot.argv[1:]])
        time.sleep(0.5)  # the card models' worker thread, if still importing
    finally:
        bot.stop()
        bot.log = saved
    by_package: Counter[str] = Counter()
    total = 0
    for line in log.read_text(errors="replace").splitlines():
        m = _IMPORT.match(line)
        if m:
            self_us, name = int(m.group(1)), m.group(4)
            by_package[name.split(".")[0]] += self_us
            total += self_us
    return {"total_s": total / 1e6, "by_package_s": {k: v / 1e6 for k, v in by_package.most_common(15)}}


def profile(bot: BotProcess, connector_url: str, out: Path) -> dict[str, Any]:
    """py-spy from process start to the first answered turn; inclusive wall time per function, per thread group."""
    spy = shutil.which("py-spy", path=str(Path(PY).parent)) or shutil.which("py-spy")
    if not spy:
        return {"error": "py-spy is not installed"}
    raw = out / f"coldstart-{bot.name}.pyspy.txt"
    argv = [spy, "record", "--idle", "--threads", "--nonblocking", "-r", str(PYSPY_RATE), "-f", "raw", "-o", str(raw), "--", *bot.argv]
    try:
        bot.start(first_turn_to=connector_url, argv=argv)
    finally:
        _stop_profiled(bot)
    return {"raw": raw.name, "rate": PYSPY_RATE, "first_turn_s": bot.first_turn_s, "threads": summarize(raw, PYSPY_RATE)}


def what_ifs(procs: list[BotProcess], starts: int, connector_url: str) -> dict[str, dict[str, dict[str, float]]]:
    """Median /healthz and first turn per backend and variant, and the echo bot's, all interleaved."""
    echo = next(p for p in procs if p.name == "echo")
    samples: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    for _ in range(starts):
        for p in procs:
            variants = [""] if p is echo else list(VARIANTS)
            for variant in variants:
                env = {"BENCH_VARIANT": variant} if variant else None
                argv = None if p is echo else [PY, "-m", "bench.variants.setup"]
                p.start(first_turn_to=connector_url, extra_env=env, argv=argv)
                p.stop()
                samples.setdefault(p.name, {}).setdefault(variant or "-", []).append((p.cold_start_s, p.first_turn_s, p.first_turn_cpu_s))
    return {bot: {v: {"healthz_s": statistics.median(x[0] for x in xs), "first_turn_s": statistics.median(x[1] for x in xs),
                      "first_turn_cpu_s": statistics.median(x[2] for x in xs)}
                  for v, xs in by_variant.items()} for bot, by_variant in samples.items()}


def pg_open(url: str, runs: int) -> dict[str, float]:
    """bench.pg_open `runs` times (fresh interpreters); the median of each step."""
    env = {**os.environ, "BENCH_DATABASE_URL": url}
    out = [json.loads(subprocess.run([PY, "-m", "bench.pg_open"], cwd=ROOT, env=env, capture_output=True, text=True,
                                     check=True, timeout=60).stdout) for _ in range(runs)]
    return {k: statistics.median(o[k] for o in out) for k in out[0]}


def markdown(result: dict[str, Any]) -> str:
    lines = ["| bot | /healthz s | first turn s | first turn after /healthz s | a second turn s |", "|---|---|---|---|---|"]
    for name, t in result["timeline"].items():
        lines.append(f"| {name} | {t['healthz_s']:.3f} | {t['first_turn_s']:.3f} | {t['first_turn_after_healthz_s']:.3f} | "
                     f"{t['second_turn_s']:.3f} |")
    if result.get("what_ifs"):
        echo = result["what_ifs"]["echo"]["-"]
        lines += ["", f"What-ifs (bench/variants/setup.py; median of {result['starts']} interleaved starts; echo: /healthz "
                  f"{echo['healthz_s']:.3f} s, first turn {echo['first_turn_s']:.3f} s, CPU to it {echo['first_turn_cpu_s']:.3f} s):", "",
                  "| bot | variant | /healthz s | ×echo | first turn s | ×echo | CPU s to first turn | ×echo |", "|---|---|---|---|---|---|---|---|"]
        for bot, by_variant in result["what_ifs"].items():
            if bot == "echo":
                continue
            for variant, t in by_variant.items():
                lines.append(f"| {bot} | {variant} | {t['healthz_s']:.3f} | {t['healthz_s'] / echo['healthz_s']:.2f} | "
                             f"{t['first_turn_s']:.3f} | {t['first_turn_s'] / echo['first_turn_s']:.2f} | "
                             f"{t['first_turn_cpu_s']:.3f} | {t['first_turn_cpu_s'] / echo['first_turn_cpu_s']:.2f} |")
    if result.get("pg_open"):
        o = result["pg_open"]
        lines += ["", f"Opening the PostgreSQL store (bench/pg_open.py, median of {result['starts']} fresh interpreters): import "
                  f"{o['import_s']:.3f} s; one connection (TCP, TLS, SCRAM) {o['connect_s']:.3f} s; `PostgresDatabase.open()` on a "
                  f"migrated database {o['open_s']:.3f} s."]
    lines += ["", "Import self time, process start → first turn answered (`-X importtime`, one start):", ""]
    for name, imp in result["imports"].items():
        packages = ", ".join(f"{k} {v:.3f}" for k, v in list(imp["by_package_s"].items())[:12])
        lines.append(f"- **{name}**: {imp['total_s']:.3f} s in all; {packages}")
    for name, prof in result["profiles"].items():
        if "threads" not in prof:
            continue
        lines += ["", f"**{name}**, py-spy ({prof['rate']} Hz, wall clock incl. idle), start → first turn {prof['first_turn_s']:.3f} s:"]
        for group, data in prof["threads"].items():
            top = [(k, v) for k, v in data["top"] if not k.startswith(("<module> (app.py", "_bootstrap", "Thread."))][:18]
            lines.append(f"- {group} threads, {data['wall_s']:.3f} s sampled: " + "; ".join(f"`{k}` {v:.3f}" for k, v in top))
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", type=int, default=5, help="unprofiled starts per bot and variant (median)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--no-what-ifs", dest="what_ifs", action="store_false", help="skip the start-up what-ifs")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-cold-") as tmp, bench_postgres() as pg:
        state = Path(tmp)
        sandbox, sandbox_env = start_sandbox(state)
        connector, connector_url = start_connector()
        from bench.run import bots  # the same bots, configured as the benchmark runs them

        procs = [p for p in bots(sandbox_env, state, pg) if p.name != "bare"]
        try:
            for p in procs:  # a first start applies the migrations; the measured starts are restarts, as in bench.run
                p.start()
                p.stop()
            runs: dict[str, list[dict[str, float]]] = {p.name: [] for p in procs}
            for _ in range(args.starts):
                for p in procs:
                    runs[p.name].append(timeline(p, connector_url))
            result: dict[str, Any] = {"timeline": {n: {k: statistics.median(r[k] for r in v) for k in v[0]} for n, v in runs.items()}}
            result["imports"] = {p.name: import_times(p, connector_url, state / f"{p.name}-importtime.log") for p in procs}
            result["profiles"] = {p.name: profile(p, connector_url, args.out) for p in procs}
            result["starts"] = args.starts
            result["pg_open"] = pg_open(next(p for p in procs if p.name == "setup-postgres").env["DATABASE_URL"], args.starts)
            result["what_ifs"] = what_ifs(procs, args.starts, connector_url) if args.what_ifs else {}
        finally:
            stop_all(procs, connector, sandbox)
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    result["load_average"] = os.getloadavg()
    output.write(args.out, "coldstart", result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
