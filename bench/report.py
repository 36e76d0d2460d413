"""The benchmark's targets (each a ratio to the echo bot measured in the same run, or a bound) and its Markdown tables."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bench.apply import markdown as apply_markdown

BOTS = ("bare", "echo", "setup-sqlite", "setup-postgres")
BACKENDS = {"setup-sqlite": "sqlite", "setup-postgres": "postgres"}
Verdict = tuple[str, str, bool, str]  # backend bot, target, passed, the figures behind it


def _cpu_ratio(r: dict[str, Any], bot: str, peer: str) -> float:
    """The worst (highest) ratio of CPU per turn over the concurrencies; the bot's own plus its database server's."""
    return max(float(r[bot][c]["total_cpu_ms_per_turn"]) / max(1e-9, float(r[peer][c]["cpu_ms_per_turn"])) for c in r[bot])


def _targets(r: dict[str, Any], b: str) -> list[tuple[str, bool, str]]:
    echo, me = r["echo"], r[b]

    def tput(conc: int) -> tuple[str, bool, str]:
        ratio = me[conc]["turns_per_s"] / echo[conc]["turns_per_s"]
        return f"turns/s ≥ 3× echo at {conc}", ratio >= 3, f"{ratio:.2f}×"

    p99 = me[64]["p99_ms"] / echo[64]["p99_ms"]
    cpu_echo, cpu_bare = _cpu_ratio(r, b, "echo"), _cpu_ratio(r, b, "bare")
    first = r["first_turn"][b] / r["first_turn"]["echo"]
    floor = r["first_turn"].get("echo-stack")  # runs from before it was measured have none
    stack = (f"; the stack's floor (echo-stack) {floor / r['first_turn']['echo']:.2f}× echo's, this bot "
             f"{r['first_turn'][b] / floor:.2f}× the floor's") if floor else ""
    cold = r["cold"][b] / r["cold"]["echo"]
    fds = f"{me[1]['fds_before']} → {', '.join(str(me[c]['fds_after']) for c in me)}"
    rss = r["conversations"][b]["rss_mb"]
    apply = r["apply"][BACKENDS[b]].get("ratio", float("inf"))  # inf: the apply run failed (its error is in the tables)
    return [
        tput(16),
        tput(64),
        ("p99 at 64 ≤ ⅓ of echo's", p99 <= 1 / 3, f"{p99:.2f}× ({me[64]['p99_ms']:.0f} vs {echo[64]['p99_ms']:.0f} ms)"),
        ("CPU per turn ≤ ¼ of echo's (worst concurrency)", cpu_echo <= 0.25, f"{cpu_echo:.2f}× echo, {cpu_bare:.1f}× bare"),
        ("first turn after a cold start ≤ 1.0× echo's", first <= 1.0,
         f"{first:.2f}× ({r['first_turn'][b]:.3f} vs {r['first_turn']['echo']:.3f} s); CPU to it "
         f"{r['first_turn_cpu'][b] / r['first_turn_cpu']['echo']:.2f}×{stack}"),
        ("cold start (/healthz) ≤ 1.2× echo's", cold <= 1.2, f"{cold:.2f}×"),
        ("open descriptors flat under load", me[64]["fds_after"] <= me[1]["fds_before"] + 8, fds),
        ("RSS ≤ 100 MB after 1,000 conversations", rss <= 100, f"{rss:.0f} MB"),
        ("provisioning apply ≤ 1.2× its critical path", apply <= 1.2, f"{apply:.2f}×"),
    ]


def verdicts(results: dict[str, Any]) -> list[Verdict]:
    return [(b, name, ok, detail) for b in BACKENDS for name, ok, detail in _targets(results, b)]


def _row(results: dict[str, Any], name: str, conc: int) -> str:
    r = results[name][conc]
    echo, bare = results["echo"][conc], results["bare"][conc]
    db = f"{r['server_cpu_ms_per_turn']:.2f}" if name == "setup-postgres" else "–"
    return (f"| {name} | {conc} | {r['turns_per_s']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['cpu_ms_per_turn']:.2f} | {db} | "
            f"{r['total_cpu_ms_per_turn'] / max(1e-9, echo['cpu_ms_per_turn']):.2f} | {r['rss_mb']:.0f} | {r['fds_after']} | "
            f"{r['turns_per_s'] / (echo['turns_per_s'] or 1):.2f} | {r['turns_per_s'] / (bare['turns_per_s'] or 1):.2f} |")


def markdown(results: dict[str, Any], checked: list[Verdict]) -> str:
    lines = [
        f"Measured {results['date']} on {results['machine']}; {results['rounds']} interleaved round(s), each figure the median.",
        "",
        "| bot | conv | turns/s | p50 ms | p99 ms | CPU ms/turn (bot) | + PostgreSQL server | CPU ×echo | RSS MB | fds | turns ×echo | turns ×limit |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [_row(results, name, conc) for name in BOTS for conc in results[name]]
    lines += ["", "| bot | cold start s (median; each start) | first turn s (median; each start) | CPU s to first turn | "
              "RSS MB after 1,000 conversations | errors |", "|---|---|---|---|---|---|"]
    fmt: Callable[[list[float]], str] = lambda v: ", ".join(f"{x:.2f}" for x in v)  # noqa: E731
    for name in [n for n in (*BOTS, "echo-stack") if n in results["cold"]]:
        row = (f"| {name} | {results['cold'][name]:.3f} ({fmt(results['cold_samples'][name])}) | "
               f"{results['first_turn'][name]:.3f} ({fmt(results['first_turn_samples'][name])}) | {results['first_turn_cpu'][name]:.3f} | ")
        if name not in results["conversations"]:  # echo-stack: started for the cold start only
            lines.append(row + "– | – |")
            continue
        c = results["conversations"][name]
        errors = sum(c["errors"].values()) + sum(sum(results[name][k]["errors"].values()) for k in results[name])
        lines.append(row + f"{c['rss_mb']:.0f} ({c['conversations_used']} conversations) | {errors} |")
    lines += ["", "| bot | idle: CPU ms per second (bot) | + PostgreSQL server |", "|---|---|---|"]
    for name, cost in results["idle"].items():
        db = f"{cost['server_cpu_ms_per_s']:.1f}" if name == "setup-postgres" else "–"
        lines.append(f"| {name} | {cost['cpu_ms_per_s']:.1f} | {db} |")
    lines += ["", "| `/setup copilot` → its card (one turn, reply included) | sqlite p50 ms | sqlite p99 ms | postgres p50 ms | postgres p99 ms |",
              "|---|---|---|---|---|"]
    for conc in results["setup-sqlite"]:
        s = results["setup-sqlite"][conc]["by_text"].get("/setup copilot", {})
        p = results["setup-postgres"][conc]["by_text"].get("/setup copilot", {})
        lines.append(f"| {conc} conversation{'s' if conc != 1 else ''} | {s.get('p50_ms', 0):.1f} | {s.get('p99_ms', 0):.1f} | "
                     f"{p.get('p50_ms', 0):.1f} | {p.get('p99_ms', 0):.1f} |")
    for backend, result in results["apply"].items():
        lines += ["", f"**{backend}**: " + (apply_markdown(result) if "error" not in result else f"apply failed: {result['error']}")]
    lines += ["", "| backend | target | result | figures |", "|---|---|---|---|"]
    lines += [f"| {BACKENDS[b]} | {name} | {'pass' if ok else '**FAIL**'} | {detail} |" for b, name, ok, detail in checked]
    return "\n".join(lines) + "\n"
