"""Which SQL statements one provisioning apply sends to PostgreSQL, stretch by stretch.

    python -m bench.apply_statements [--latency-ms 100]

One fresh client-secret setup (bench.apply's) on a throwaway PostgreSQL server with `log_statement = all`; for each
stretch, its time, how many statements the server ran, and the most frequent ones (literals and parameters folded
to `?`). This is how the PostgreSQL apply's distance from its critical path was traced (bench/README.md).
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections import Counter
from typing import Any, Awaitable, Callable

import bench.apply as apply
from bench.pg import BenchPostgres, bench_postgres
from store import Database

_STATEMENT = re.compile(r"(?:statement|execute [^:]*): (.*)")


def _fold(sql: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"\$\d+|'[^']*'|\b\d+\b", "?", sql))[:120]


def instrument(pg: BenchPostgres, top: int) -> None:
    """Wraps bench.apply's stretch timer so each stretch also reports the server log it produced."""
    timed = apply._stretch
    log = pg.server.socket_dir / "server.log"

    async def stretch(name: str, recorder: apply.Recorder, action: Callable[[], Awaitable[Any]],
                      done: Callable[[], Awaitable[bool]], db: Database) -> dict[str, Any]:
        start = log.stat().st_size
        result = await timed(name, recorder, action, done, db)
        text = log.read_bytes()[start:].decode(errors="replace")
        statements = [_fold(s) for s in _STATEMENT.findall(text)]
        print(f"{name}: {result['seconds']:.3f} s, {result['calls']} Microsoft calls, {len(statements)} statements")
        for sql, count in Counter(statements).most_common(top):
            print(f"  {count:5d}  {sql}")
        return result

    apply._stretch = stretch


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency-ms", type=float, default=100.0)
    parser.add_argument("--top", type=int, default=14)
    args = parser.parse_args(argv)
    with bench_postgres() as pg:
        with pg.server.admin() as conn:
            conn.execute("ALTER SYSTEM SET log_statement = 'all'")
            conn.execute("SELECT pg_reload_conf()")
        instrument(pg, args.top)
        asyncio.run(apply.run(args.latency_ms, 1, [pg.database("bench_apply_statements")]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
