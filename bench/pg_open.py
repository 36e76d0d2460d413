"""What opening the PostgreSQL store costs at start-up, step by step, in a fresh interpreter (so imports count).

    BENCH_DATABASE_URL=postgresql://… python -m bench.pg_open      # prints one JSON object, seconds

import_s: `store.postgres` (psycopg, psycopg_pool) after `store` itself; connect_s: one connection as the pool makes it (TCP, TLS,
SCRAM), closed again; open_s: `PostgresDatabase.open()` on a migrated database (pool of min_size connections, the
migration check under its advisory lock, the LISTEN connection), which the bot awaits before it listens.
The URL comes from the environment: it carries a password, which a command line would show to `ps`.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time


async def measure(url: str) -> dict[str, float]:
    import store  # noqa: F401 - what both backends import; not counted

    started = time.perf_counter()
    import psycopg

    from store.postgres import PostgresDatabase, conninfo

    imported = time.perf_counter()
    conn = await psycopg.AsyncConnection.connect(conninfo(url), autocommit=True)
    connected = time.perf_counter()
    await conn.close()
    db = PostgresDatabase(url)
    opening = time.perf_counter()
    await db.open()
    opened = time.perf_counter()
    await db.close()
    return {"import_s": imported - started, "connect_s": connected - imported, "open_s": opened - opening}


def main() -> int:
    url = os.environ.get("BENCH_DATABASE_URL", "")
    if not url:
        sys.stderr.write("BENCH_DATABASE_URL is not set\n")
        return 2
    json.dump(asyncio.run(measure(url)), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
