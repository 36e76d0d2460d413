"""The PostgreSQL fixtures give a real server: the product's driver (psycopg 3 async, its pool) reaches it over TCP
with the test role's password, each test gets its own empty database, and the server never runs as root."""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from tests.fixtures.postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]


def outer_uid(uid: int) -> int:
    """`uid` as the initial user namespace knows it (this process may run inside `unshare --map-root-user`)."""
    for line in Path("/proc/self/uid_map").read_text().splitlines():
        start, outer, count = (int(x) for x in line.split())
        if start <= uid < start + count:
            return outer + uid - start
    raise AssertionError(f"uid {uid} is not mapped here")


def process_uids(pid: int) -> list[int]:
    """Real, effective, saved and filesystem uids of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(x) for x in line.split()[1:]]
    raise AssertionError(f"no Uid line for process {pid}")


async def test_the_test_role_logs_in_over_tcp_with_its_password_and_round_trips_rows(
        postgres_server: PostgresServer, postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    assert parts.scheme == "postgresql" and parts.hostname == "127.0.0.1" and parts.port == postgres_server.port
    async with await psycopg.AsyncConnection.connect(postgres_url, sslmode="disable") as conn:
        row = await (await conn.execute(
            "SELECT current_user, current_database(), host(inet_server_addr()), inet_server_port(),"
            " (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()),"
            " (SELECT count(*) FROM pg_tables WHERE schemaname = 'public')")).fetchone()
        assert row == (postgres_server.user, parts.path.lstrip("/"), "127.0.0.1", postgres_server.port, False, 0)
        await conn.execute("CREATE TABLE notes (id integer PRIMARY KEY, body text NOT NULL)")
        await conn.execute("INSERT INTO notes VALUES (%s, %s), (%s, %s)", (1, "første", 2, "second"))
        await conn.commit()
    async with await psycopg.AsyncConnection.connect(postgres_url, sslmode="disable") as again:
        rows = await (await again.execute("SELECT id, body FROM notes ORDER BY id")).fetchall()
    assert rows == [(1, "første"), (2, "second")]


async def test_a_wrong_password_is_refused_over_tcp(postgres_server: PostgresServer, postgres_url: str) -> None:
    dbname = urlsplit(postgres_url).path.lstrip("/")
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        await psycopg.AsyncConnection.connect(host="127.0.0.1", port=postgres_server.port, user=postgres_server.user,
                                              password=postgres_server.password + "x", dbname=dbname,
                                              sslmode="disable", connect_timeout=5)


def test_the_password_needs_percent_decoding_in_the_url_and_stays_out_of_reprs(postgres_server: PostgresServer, postgres_url: str) -> None:
    """The URL carries reserved characters only percent-encoded: a parser that does not decode them fails."""
    assert set("@:/?#%+ ") <= set(postgres_server.password)
    raw = urlsplit(postgres_url).password
    assert raw is not None and raw != postgres_server.password and "@" not in raw and "/" not in raw
    assert raw not in repr(postgres_url) and postgres_server.password not in repr(postgres_server), \
        "failure reports would print the password"


async def test_tls_verifies_against_the_server_certificate(postgres_server: PostgresServer, postgres_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url, sslmode="verify-full",
                                                     sslrootcert=str(postgres_server.ssl_root_cert)) as conn:
        row = await (await conn.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).fetchone()
    assert row is not None and row[0] is True and row[1].startswith("TLSv1.")


async def test_the_driver_pool_serves_connections(postgres_url: str) -> None:
    async with AsyncConnectionPool(postgres_url, min_size=1, max_size=2, open=False,
                                   kwargs={"sslmode": "disable"}) as pool:
        async def answer(n: int) -> int:
            async with pool.connection() as conn:
                row = await (await conn.execute("SELECT %s::int * 2, pg_sleep(0.05)", (n,))).fetchone()
                assert row is not None
                return int(row[0])

        assert await asyncio.gather(*(answer(n) for n in range(4))) == [0, 2, 4, 6]


async def test_two_fresh_databases_are_isolated(postgres_url: str, postgres_url_factory: Callable[[], str]) -> None:
    other = postgres_url_factory()
    assert urlsplit(other).path != urlsplit(postgres_url).path
    async with await psycopg.AsyncConnection.connect(postgres_url, sslmode="disable", autocommit=True) as first:
        await first.execute("CREATE TABLE only_here (x int)")
    async with await psycopg.AsyncConnection.connect(other, sslmode="disable", autocommit=True) as second:
        row = await (await second.execute("SELECT to_regclass('only_here') IS NULL")).fetchone()
        assert row == (True,)
        await second.execute("CREATE TABLE only_here (x int)")  # no clash: a different database


@pytest.mark.parametrize("run", [1, 2])
async def test_each_test_gets_an_empty_database(postgres_url: str, run: int) -> None:
    """Both runs create the same table: the second would clash if databases were shared between tests."""
    async with await psycopg.AsyncConnection.connect(postgres_url, sslmode="disable", autocommit=True) as conn:
        row = await (await conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace"))\
            .fetchone()
        assert row == (0,)
        await conn.execute("CREATE TABLE shared_name (run int)")
        await conn.execute("INSERT INTO shared_name VALUES (%s)", (run,))


async def test_database_url_gives_each_backend(database_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    backend = request.node.callspec.id
    assert backend in {"sqlite", "postgresql"}
    if backend == "sqlite":
        assert database_url == f"sqlite:///{tmp_path}/state.db"
        path = database_url.removeprefix("sqlite:///")
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE t (x int)")
        assert Path(path).is_file()
    else:
        assert database_url.startswith("postgresql://")
        async with await psycopg.AsyncConnection.connect(database_url, sslmode="disable") as conn:
            row = await (await conn.execute("SELECT current_user")).fetchone()
        assert row is not None and row[0] == "setup_bot"


async def test_listen_notify_between_two_connections(postgres_url: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_url, sslmode="disable", autocommit=True) as listener, \
            await psycopg.AsyncConnection.connect(postgres_url, sslmode="disable", autocommit=True) as notifier:
        sender = notifier.info.backend_pid
        await listener.execute("LISTEN setup_events")
        await notifier.execute("SELECT pg_notify('setup_events', 'request-42 approved')")
        received = [n async for n in listener.notifies(timeout=5, stop_after=1)]
    assert [(n.channel, n.payload, n.pid) for n in received] == [("setup_events", "request-42 approved", sender)]


async def test_the_server_runs_as_an_unprivileged_user(postgres_server: PostgresServer, postgres_url: str) -> None:
    with postgres_server.admin() as admin:
        row = admin.execute("SELECT current_setting('data_directory')").fetchone()
    assert row is not None
    data_directory = Path(str(row[0]))
    assert data_directory == postgres_server.data_dir
    postmaster = int((data_directory / "postmaster.pid").read_text().split()[0])
    async with await psycopg.AsyncConnection.connect(postgres_url, sslmode="disable") as conn:
        backend = conn.info.backend_pid
        assert data_directory.stat().st_uid == postgres_server.uid
        assert process_uids(postmaster) == [postgres_server.uid] * 4
        assert process_uids(backend) == [postgres_server.uid] * 4
    assert outer_uid(postgres_server.uid) != 0, "the server runs as root outside this user namespace"
    if os.geteuid() == 0 and outer_uid(0) == 0:  # real root, as `make test` on CI: Debian's account
        assert postgres_server.uid == pwd.getpwnam("postgres").pw_uid


def test_the_server_starts_only_when_asked_and_is_stopped_and_removed_after_the_session(tmp_path: Path) -> None:
    """A separate pytest session with only this fixture module (and its own temporary directory): no server before a
    test asks for one; the database of its first test is gone in its second; after the session the server process
    has ended and its directory is removed."""
    report = tmp_path / "report.json"
    (tmp_path / "test_inner.py").write_text(textwrap.dedent(f"""
        import json, pathlib, tempfile
        from urllib.parse import urlsplit

        REPORT = pathlib.Path({str(report)!r})

        def test_without_postgres():
            assert list(pathlib.Path(tempfile.gettempdir()).iterdir()) == []

        def test_first(postgres_server, postgres_url):
            assert postgres_server.socket_dir.parent == pathlib.Path(tempfile.gettempdir())
            pid = int((postgres_server.data_dir / "postmaster.pid").read_text().split()[0])
            REPORT.write_text(json.dumps({{"root": str(postgres_server.socket_dir), "pid": pid,
                                           "db": urlsplit(postgres_url).path.lstrip("/")}}))

        def test_second(postgres_server, postgres_url):
            first = json.loads(REPORT.read_text())
            with postgres_server.admin() as conn:
                names = [r[0] for r in conn.execute("SELECT datname FROM pg_database")]
            assert first["db"] not in names and urlsplit(postgres_url).path.lstrip("/") in names
    """))
    # The server's user must reach its directory: a fresh world-traversable one in /tmp, not under tmp_path.
    inner_tmp = Path(tempfile.mkdtemp(prefix="copilot-pg-session-", dir="/tmp"))
    try:
        inner_tmp.chmod(0o755)
        env = {**os.environ, "PYTHONPATH": str(ROOT), "TMPDIR": str(inner_tmp)}
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-c", os.devnull, "-p", "no:cacheprovider",
                                 "-p", "tests.fixtures.postgres", "--rootdir", str(tmp_path),
                                 str(tmp_path / "test_inner.py")],
                                cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "3 passed" in result.stdout, result.stdout
        first = json.loads(report.read_text())
        assert not Path(first["root"]).exists(), "the server's directory outlived its session"
        assert not Path(f"/proc/{first['pid']}").exists(), "the server outlived its session (or was never reaped)"
        assert list(inner_tmp.iterdir()) == []
    finally:
        shutil.rmtree(inner_tmp, ignore_errors=True)
