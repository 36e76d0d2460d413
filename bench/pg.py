"""The benchmark's own throwaway PostgreSQL server (the tests' server, tests/fixtures/pgserver.py: 127.0.0.1, an
unprivileged user, durability off), its databases, and the CPU time it spends.

    with bench_postgres() as pg:
        url = pg.database("bench_setup")     # DATABASE_URL for the bot: TLS verified against the server's certificate
        pg.cpu_seconds()                      # the server's processes, all of them, so far
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import psutil

from tests.fixtures.pgserver import PostgresServer, create_database, running_server


@dataclass(frozen=True)
class BenchPostgres:
    server: PostgresServer

    def database(self, name: str) -> str:
        """A fresh database and its URL, with TLS verified as production should be (sslmode=verify-full)."""
        url = create_database(self.server, name)
        return f"{url}?sslmode=verify-full&sslrootcert={quote(str(self.server.ssl_root_cert), safe='/')}"

    def postmaster(self) -> psutil.Process:
        return psutil.Process(int((self.server.data_dir / "postmaster.pid").read_text().split()[0]))

    def cpu_seconds(self) -> float:
        """User + system CPU of the postmaster, of its live children (backends, walwriter, checkpointer, ...) and of
        the children it has already reaped (a backend whose connection closed)."""
        main = self.postmaster()
        times = main.cpu_times()
        total = times.user + times.system + times.children_user + times.children_system
        for child in main.children(recursive=True):
            with contextlib.suppress(psutil.NoSuchProcess):
                child_times = child.cpu_times()
                total += child_times.user + child_times.system
        return float(total)


@contextlib.contextmanager
def bench_postgres() -> Iterator[BenchPostgres]:
    """Started here, stopped and removed on exit."""
    with running_server() as server:
        yield BenchPostgres(server)
