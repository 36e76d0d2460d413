"""Three bot instances on one PostgreSQL database, killed at random: 20 setups, then two measured fail-overs.

Three real `python app.py` processes (each its own PORT and INSTANCE_ID) share one PostgreSQL database (the
`postgres_url` fixture), one sandbox and one fake Bot Connector. Teams is emulated by a client that delivers each
activity to the next instance in turn (round-robin, as a load balancer would); an instance that is down is skipped and
the activity goes to another, and a delivery that fails is made again, the same activity, to the next instance up.

Phase 1: 20 setups (client secret path) while a random instance is killed -9 at random moments and restarted (same
INSTANCE_ID and port, so it resumes its own leases at once). The final checks are those of test_bot_kill.py, across all
instances: one app registration per setup, exactly the secret each job recorded, every recorded progress card showing
Done, each reminder and completion card posted exactly once (a duplicate is accepted only when the instance that posted
the first copy was killed within moments of it reaching Teams: the Bot Connector has no idempotent post), no dialog lost,
no secret in any instance's log, any post, any file or any PostgreSQL table.

Phase 2: fail-over, measured. LEASE_TTL is 5 s here, which is also the notifier's lease (app.py never gives the
notifier less than 5 s), so the one target, LEASE_TTL + 5 s, is honest for both:
- the job: the instance holding a running job's lease is killed and stays down; the time until a new event of that job
  appears (another instance took over the lease and resumed the job);
- the notifier: the instance holding the "notifier" lease is killed and stays down the instant the job's progress card
  reaches Teams; the time until another instance posts the job's next card.

Who made each Bot Connector call is known from the TCP peer of the call (the socket belongs to one bot process).
KILL_SEED=<n> runs another plan; figures go to test-output/reliability/<test>.json, instance logs there on failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import time
from pathlib import Path
from typing import Any, Callable, Iterator
from urllib.parse import unquote

import aiohttp
import psutil
import pytest
from aiohttp import web

import sandbox.graph as sandbox_graph
from bot.conversations import ConversationStore
from bot.storage import BotStorage
from provisioning import JobStatus, StepName
from sandbox import Sandbox
from sandbox.identity import new_secret as real_new_secret
from tests.fixtures.connector import Connector, card_titled
from tests.fixtures.provisioning import make_service, service_env
from tests.fixtures.sandbox import sandbox_http
from tests.reliability.test_bot_kill import (
    GUIDED,
    NOT_INHERITED,
    WAIT,
    BotProcess,
    Lost,
    Setup,
    User,
    buttons,
    free_port,
)

ROOT = Path(__file__).resolve().parents[2]
EVIDENCE = ROOT / "test-output" / "reliability"
SEED = int(os.environ.get("KILL_SEED", "20261202"))
INSTANCES = 3
SETUPS = 20
PARALLEL = 6  # setups in flight at once
MIN_KILLS = 8
MAX_RANDOM_KILLS = 12  # during the setups: every restart costs a couple of seconds on a busy machine
LEASE_TTL_S = 5.0  # the job leases' TTL, and (app.py's floor) the notifier's
FAILOVER_TARGET_S = LEASE_TTL_S + 5.0
CRASH_WINDOW_S = 0.5
PROGRESS = "Setting up '"  # the progress card: only the notifier posts and updates it (turns update guided-step cards too)


class Instance(BotProcess):
    """One bot process. kill_now() is kill -9 and a restart; down_for_good() is kill -9 and nothing more."""

    def __init__(self, name: str, env: dict[str, str], workdir: Path, log_path: Path, session: aiohttp.ClientSession) -> None:
        super().__init__(env, workdir, log_path, session)
        self.name = name
        self.gone = False  # killed and not restarted (the fail-over phase)
        self.served = 0  # activities this instance answered

    def down_for_good(self, reason: str) -> bool:
        if self.proc is None or not self.up.is_set() or (self.restart is not None and not self.restart.done()):
            return False
        self.up.clear()
        self.gone = True
        self.proc.send_signal(signal.SIGKILL)
        self.kill_times.append(time.monotonic())
        self.kills.append(f"{self.clock()} {self.name}: {reason} (not restarted)")
        return True

    def died_by_itself(self) -> str:
        if self.restart is not None and self.restart.done() and not self.restart.cancelled() and self.restart.exception():
            return f"{self.name} did not come back after a kill: {self.restart.exception()}"
        if self.up.is_set() and self.proc is not None and self.proc.returncode is not None:
            return f"{self.name} died by itself (exit {self.proc.returncode}):\n{self.log_tail()}"
        return ""


class RoundRobin:
    """Teams in front of several instances: each activity goes to the next instance in turn; one that is down is skipped;
    a failed delivery is made again (same activity) to the next instance that is up."""

    def __init__(self, instances: list[Instance], session: aiohttp.ClientSession) -> None:
        self.instances, self.session = instances, session
        self.turn = 0
        self.redeliveries = 0
        self.errors: list[str] = []

    async def pick(self, deadline: float) -> Instance:
        while True:
            for instance in self.instances:
                if problem := instance.died_by_itself():
                    raise AssertionError(problem)
            for _ in range(len(self.instances)):
                instance = self.instances[self.turn % len(self.instances)]
                self.turn += 1
                if instance.up.is_set():
                    return instance
            if time.monotonic() > deadline:
                raise AssertionError(f"no instance was up for {WAIT:.0f} s")
            await asyncio.sleep(0.05)

    async def send(self, body: dict[str, Any]) -> tuple[int, Any]:
        deadline = time.monotonic() + WAIT
        while True:
            instance = await self.pick(deadline)
            try:
                async with self.session.post(f"{instance.url}/api/messages", json=body, timeout=aiohttp.ClientTimeout(total=WAIT)) as r:
                    text, status = await r.text(), r.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"could not deliver a {body['type']} for {WAIT:.0f} s") from None
                self.redeliveries += 1
                await asyncio.sleep(0.05)
                continue
            instance.served += 1
            if status not in (200, 201):
                self.errors.append(f"{instance.name}: HTTP {status} for {json.dumps(body.get('value') or body.get('text'))[:120]}: {text[:200]}")
            return status, json.loads(text) if text else None


class Fleet:
    """What the users (test_bot_kill's User) need from a harness, plus who posted what and the kills."""

    def __init__(self, instances: list[Instance], teams: RoundRobin, connector: Connector, rng: random.Random) -> None:
        self.instances, self.teams, self.connector, self.rng = instances, teams, connector, rng
        self.service_url = connector.url
        self.began = time.monotonic()
        self.arrivals: list[tuple[float, str, str, str]] = []  # (when, conversation, body, instance) of every post
        self.calls: list[tuple[float, str, str, str, str]] = []  # (when, method, conversation, body, instance) of every call
        self.on_post: list[Callable[[str, str, str, str], None]] = []
        self.skipped: list[str] = []
        self.done = asyncio.Event()
        self._ports: dict[int, Instance] = {}

    def clock(self) -> str:
        return f"{time.monotonic() - self.began:5.1f}s"

    async def kill_later(self, delay: float, reason: str) -> None:  # test_bot_kill's User calls it for planned kills only
        await asyncio.sleep(delay)
        self.kill(self.rng.choice(self.instances), reason)

    def kill(self, instance: Instance, reason: str) -> asyncio.Task[None] | None:
        for port in [p for p, i in self._ports.items() if i is instance]:
            del self._ports[port]  # its sockets die with it; a new process may reuse a port
        task = instance.kill_now(f"{instance.name}: {reason}")
        if task is None:
            self.skipped.append(f"{self.clock()} {instance.name}: {reason} (it was restarting)")
        return task

    def who(self, port: int) -> str:
        """The instance whose socket this is (by its local port), or "?" (a process that is gone)."""
        if port in self._ports:
            return self._ports[port].name
        for instance in self.instances:
            if instance.proc is None or instance.proc.returncode is not None:
                continue
            try:
                ports = {c.laddr.port for c in psutil.Process(instance.proc.pid).net_connections(kind="tcp") if c.laddr}
            except psutil.Error:
                continue
            if port in ports:
                self._ports[port] = instance
                return instance.name
        return "?"

    async def front(self, session: aiohttp.ClientSession) -> web.AppRunner:
        """The serviceUrl every instance posts to: each call goes on to the fake Bot Connector, noting who made it."""

        async def relay(request: web.Request) -> web.Response:
            peer = request.transport.get_extra_info("peername") if request.transport else None
            poster = self.who(int(peer[1])) if peer else "?"
            body = await request.read()
            async with session.request(request.method, self.connector.url.rstrip("/") + request.raw_path, data=body,
                                       headers={"Content-Type": request.headers.get("Content-Type", "application/json")}) as r:
                status, answer = r.status, await r.read()
            parts = request.raw_path.split("?")[0].split("/")
            conversation = unquote(parts[3]) if len(parts) > 3 else ""
            text = body.decode("utf-8", "replace")
            now = time.monotonic()
            self.calls.append((now, request.method, conversation, text, poster))
            if request.method == "POST":
                self.arrivals.append((now, conversation, text, poster))
            for hook in list(self.on_post):
                hook(request.method, conversation, text, poster)
            return web.Response(status=status, body=answer, content_type="application/json")

        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", relay)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.service_url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
        return runner

    async def random_kills(self, journal: Any) -> None:
        """kill -9 at random moments, restarted at once: of a random instance, or of the one posting to Teams, or of one
        running a job (whose lease it resumes at once when it is back)."""
        for _ in range(MAX_RANDOM_KILLS):
            try:
                await asyncio.wait_for(self.done.wait(), self.rng.uniform(1.0, 3.0))
                return
            except asyncio.TimeoutError:
                pass
            target, why = self.rng.choice(self.instances), "at a random moment"
            pick = self.rng.random()
            if pick < 0.5:
                async with journal.store.db.read() as tx:
                    rows = await tx.fetchall("SELECT name, owner FROM locks WHERE expires_at > ? AND owner <> '' AND "
                                             + ("name = 'notifier'" if pick < 0.25 else "name LIKE 'job:%'"), time.time())
                owners = {str(r["owner"]).split("@", 1)[-1]: str(r["name"]) for r in rows}
                holders = [i for i in self.instances if i.name in owners]
                if holders:
                    target = self.rng.choice(holders)
                    why = f"at a random moment, holding the {owners[target.name].split(':')[0]} lease"
            self.kill(target, why)

    def crash_window(self, chat: str, words: str) -> str:
        """Why a card may rightly be in a chat more than once: the instance that posted each copy but the last was killed
        right after that copy reached Teams, before it could record it. Empty if any copy but the last has no such kill."""
        copies = [(when, who) for when, conversation, body, who in self.arrivals if conversation == chat and words in body]
        excuses = []
        for when, who in copies[:-1]:
            suspects = [i for i in self.instances if i.name == who] if who != "?" else self.instances
            close = [(k - when, i.name) for i in suspects for k in i.kill_times if -0.25 <= k - when <= CRASH_WINDOW_S]
            if not close:
                return ""
            excuses.append(f"{close[0][1]} was killed {close[0][0] * 1000:+.0f} ms from when its copy reached Teams")
        return "; ".join(excuses)

    def timeline(self) -> str:
        """Every Bot Connector call: when, who made it, what it was (for the evidence of a failure)."""
        lines = []
        for when, method, chat, text, who in self.calls:
            try:
                body = json.loads(text) if text else {}
            except ValueError:
                body = {}
            found = [a.get("content", {}) for a in body.get("attachments") or []]
            heading = str(found[0].get("body", [{}])[0].get("text", "")) if found and found[0].get("body") else str(body.get("text", ""))
            lines.append(f"{when - self.began:7.2f}s {who:6} {method:4} {chat[-18:]} {heading[:100]}")
        return "\n".join(lines)


def kills(instances: list[Instance]) -> list[str]:
    return sorted((k for i in instances for k in i.kills), key=lambda k: float(k.split("s", 1)[0]))


async def settle(journal: Any, timeout: float) -> None:
    """Until the notifier (whichever instance leads) has delivered every journal event: its low-water mark is at the last."""
    storage = BotStorage(journal.store.kv)
    deadline = time.monotonic() + timeout
    last = await journal.last_seq()
    while time.monotonic() < deadline:
        cursor = (await storage.read(["notifier/cursor"])).get("notifier/cursor")
        if isinstance(cursor, dict) and int(cursor.get("seq", 0)) >= last:
            await asyncio.sleep(1.0)  # anything posted twice after a restart has been posted by now
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the notifier did not reach event {last} within {timeout} s")


async def holder(journal: Any, lease: str) -> tuple[str, float] | None:
    """The owner of a lease row and its expiry, also one that has expired (None: released, or never taken)."""
    async with journal.store.db.read() as tx:
        row = await tx.fetchone("SELECT owner, expires_at FROM locks WHERE name = ?", lease)
    return (str(row["owner"]), float(row["expires_at"])) if row is not None and row["owner"] else None


async def job_of(journal: Any, chat: str) -> Any:
    jobs = await journal.list_jobs(tag=("conversation", chat))
    return jobs[0] if jobs else None


async def job_events(journal: Any, job_id: str, after: int) -> list[Any]:
    return [e for e in await journal.events_after(after, 100_000) if e.job_id == job_id]


async def to_plan(user: User) -> tuple[Any, int]:
    """The user's dialog up to the plan card (Approve not yet clicked)."""
    name = user.setup.agent
    mark = await user.say("/setup copilot")
    choose = await user.latest("Set up an agent: 1 of 2", after=mark)
    choice = next(e for e in choose.cards[0]["body"] if e.get("id") == "agent")
    agent = next(c["value"] for c in choice["choices"] if c["title"].startswith(f"{name} ("))
    mark = await user.click(choose, "Next", agent=agent)
    details = await user.latest("Set up an agent: 2 of 2", after=mark)
    mark = await user.click(details, "Review plan", credential="client_secret")
    return await user.latest(f"Plan for '{name}'", after=mark), mark


async def finish(user: User, approved: int) -> None:
    """The rest of a setup after Approve, as test_bot_kill's User does it."""
    name = user.setup.agent
    await user.connector.wait_for(lambda c: c.conversation_id == user.chat.id and c.method == "POST" and card_titled(f"Setting up '{name}'")(c),
                                  after=approved, timeout=WAIT)
    progress = user.posts(f"Setting up '{name}'", approved)
    for step in GUIDED:
        await user.guided(step, approved, progress[-1] if progress else None)
    await user.latest(f"'{name}' is set up", after=approved)
    user.approved_at = approved


async def job_failover(fleet: Fleet, journal: Any, sandbox: Sandbox, user: User) -> float:
    """Kill the instance running the user's job (it stays down) the instant the sandbox has created the job's app
    registration, before that instance hears back (so it dies inside a step, holding the job's lease); seconds until a
    new event of the job appears (another instance took the lease over and resumed the job)."""
    plan, _ = await to_plan(user)
    display = f"{user.setup.agent} - Copilot auth"
    killed: list[tuple[float, str, str, Instance]] = []  # (when, job id, lease owner, the instance killed)
    trouble: list[str] = []
    store = sandbox.store
    original = store.put

    async def put(kind: str, oid: str, doc: dict[str, Any]) -> None:
        await original(kind, oid, doc)
        if killed or trouble or kind != "application" or doc.get("displayName") != display:
            return
        job = await job_of(journal, user.chat.id)
        held = await holder(journal, f"job:{job.id}") if job else None
        victim = next((i for i in fleet.instances if held and held[1] > time.time() and held[0] == f"worker@{i.name}"), None)
        if job is None or held is None or victim is None:
            trouble.append(f"nobody held the job's lease while the sandbox created its app registration: {held}")
        elif not victim.down_for_good(f"holds job {job.id[:8]}'s lease; the sandbox has just created its app registration"):
            trouble.append(f"{victim.name} held the job's lease but was down already")
        else:
            killed.append((time.monotonic(), job.id, held[0], victim))

    store.put = put  # type: ignore[method-assign]
    approved = len(user.connector.calls)
    try:
        await user.click(plan, "Approve")
        deadline = time.monotonic() + WAIT
        while not killed:
            assert not trouble, trouble[0]
            assert time.monotonic() < deadline, "the fail-over job never created its app registration"
            await asyncio.sleep(0.02)
    finally:
        store.put = original  # type: ignore[method-assign]
    when, job_id, owner, victim = killed[0]
    await victim.proc.wait()  # type: ignore[union-attr]
    await asyncio.sleep(0.3)  # a commit it sent just before dying has landed by now
    still = await holder(journal, f"job:{job_id}")
    assert still is not None and still[0] == owner, f"{victim.name} died inside a step, yet the job's lease is {still}"
    seq = max(e.seq for e in await job_events(journal, job_id, 0))
    deadline = time.monotonic() + 3 * FAILOVER_TARGET_S
    while True:
        page = await journal.events_after(seq, 500)
        if any(e.job_id == job_id for e in page):
            break
        seq = page[-1].seq if page else seq
        assert time.monotonic() < deadline, f"no instance resumed job {job_id[:8]} within {3 * FAILOVER_TARGET_S:.0f} s"
        await asyncio.sleep(0.02)
    seconds = time.monotonic() - when
    now = await holder(journal, f"job:{job_id}")
    assert now is None or now[0] != owner, f"the job moved on, yet its lease is still {owner}'s"
    await finish(user, approved)
    return seconds


async def notifier_failover(fleet: Fleet, journal: Any, user: User) -> tuple[float, str, str]:
    """Kill the notifier's instance (it stays down) the instant the user's progress card reaches Teams; seconds until
    another instance posts the job's next card. Returns (seconds, the killed instance, the instance that took over)."""
    deadline = time.monotonic() + 3 * FAILOVER_TARGET_S  # a lease the earlier fail-over left behind expires meanwhile
    while True:
        held = await holder(journal, "notifier")
        leader = next((i for i in fleet.instances if held and held[1] > time.time() and held[0] == f"notifier@{i.name}"), None)
        if leader is not None and not leader.gone:
            break
        assert time.monotonic() < deadline, f"no live instance took the notifier lease (it is {held})"
        await asyncio.sleep(0.1)
    plan, _ = await to_plan(user)
    name = user.setup.agent
    killed: list[float] = []
    conversations = ConversationStore(BotStorage(journal.store.kv))

    async def kill_once_recorded() -> None:
        """Kill the leader once it has recorded the progress card (not in the window between its post and its record,
        where any implementation posts it again), while the job still runs its first steps."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            job = await job_of(journal, user.chat.id)
            record = await conversations.get(job.id) if job else None
            if record is not None and record.progress_activity_id:
                assert leader is not None
                if leader.down_for_good("holds the notifier lease; it has just recorded a progress card"):
                    killed.append(time.monotonic())
                return
            await asyncio.sleep(0.005)

    watching: list[asyncio.Future[None]] = []

    def on_post(method: str, chat: str, text: str, poster: str) -> None:
        if not watching and method == "POST" and chat == user.chat.id and f"{PROGRESS}{name}'" in text:
            watching.append(asyncio.ensure_future(kill_once_recorded()))

    fleet.on_post.append(on_post)
    approved = len(user.connector.calls)
    try:
        await user.click(plan, "Approve")
        deadline = time.monotonic() + WAIT
        while not watching or not watching[0].done():
            assert time.monotonic() < deadline, "the fail-over setup's progress card never reached Teams"
            await asyncio.sleep(0.02)
        watching[0].result()
        assert killed, f"{leader.name} was not killed (it was {'down' if not leader.up.is_set() else 'up'})"
    finally:
        fleet.on_post.remove(on_post)
    rest = asyncio.ensure_future(finish(user, approved))  # the user goes on meanwhile: the job's next events come from them too
    nxt = None
    deadline = killed[0] + 3 * FAILOVER_TARGET_S
    while nxt is None:
        if rest.done() and rest.exception() is not None:
            raise rest.exception()  # type: ignore[misc]
        assert time.monotonic() < deadline, f"no instance posted the next card within {3 * FAILOVER_TARGET_S:.0f} s of the kill"
        nxt = next(((when, who) for when, method, chat, text, who in fleet.calls if when > killed[0] and chat == user.chat.id
                    and who not in (leader.name, "?") and PROGRESS in text), None)
        await asyncio.sleep(0.02)
    await rest
    return nxt[0] - killed[0], leader.name, nxt[1]


@pytest.fixture
def reaper() -> Iterator[list[Instance]]:
    """Instances to kill at teardown, whatever happened (a timed-out test does not reach its own `finally`)."""
    instances: list[Instance] = []
    yield instances
    for instance in instances:
        instance.reap()


@pytest.mark.timeout(480)
async def test_three_instances_on_one_postgresql_survive_random_kills_and_fail_over_within_the_lease(
        sandbox: Sandbox, connector: Connector, postgres_url: str, tmp_path: Path, reaper: list[Instance],
        figures: Callable[..., None], monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(SEED)
    setups = [Setup(n, f"Fleet Test {n:02d}") for n in range(1, SETUPS + 1)]
    failover_job, failover_notifier = Setup(SETUPS + 1, "Fail-over Job"), Setup(SETUPS + 2, "Fail-over Notifier")
    everyone = [*setups, failover_job, failover_notifier]
    async with sandbox_http(sandbox) as http:  # one published agent per setup, so each makes its own app registration
        for s in everyone:
            answer = await http.post(f"{sandbox.url}/_sandbox/bots", json={
                "environment": "contoso", "name": s.agent, "schemaname": f"cr9k1_fleetTest{s.n:02d}", "published": True})
            assert answer.status_code == 201, answer.text

    state = tmp_path / "shared"  # the vault key file, the same for every instance (the database holds everything else)
    base = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    base.update(service_env(sandbox, state, LEASE_TTL=f"{LEASE_TTL_S:g}s"))
    base.update({"DATABASE_URL": postgres_url, "HOST": "127.0.0.1", "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                 "PYTHONUNBUFFERED": "1"})
    session = aiohttp.ClientSession()
    instances = []
    for n in range(1, INSTANCES + 1):
        name, workdir = f"bot-{n}", tmp_path / f"bot-{n}-cwd"
        workdir.mkdir()
        instances.append(Instance(name, {**base, "PORT": str(free_port()), "INSTANCE_ID": name}, workdir, tmp_path / f"{name}.log", session))
    reaper.extend(instances)
    teams = RoundRobin(instances, session)
    fleet = Fleet(instances, teams, connector, rng)
    users = [User(fleet, s) for s in everyone]  # type: ignore[arg-type]  # Fleet offers what User uses of a Harness
    front = await fleet.front(session)
    made: list[str] = []  # every client secret Graph hands out, for the final scan

    def new_secret() -> str:
        made.append(real_new_secret())
        return made[-1]

    monkeypatch.setattr(sandbox_graph, "new_secret", new_secret)
    journal: Any = None
    problems: list[str] = []
    failover: dict[str, Any] = {}

    def context() -> str:
        return (f"\nseed {SEED} (KILL_SEED); {len(kills(instances))} kills:\n  " + "\n  ".join(kills(instances))
                + ("\nkills skipped:\n  " + "\n  ".join(fleet.skipped) if fleet.skipped else "")
                + f"\n{teams.redeliveries} activities delivered again; served: {', '.join(f'{i.name} {i.served}' for i in instances)}"
                + f"; fail-over: {failover}; {time.monotonic() - fleet.began:.1f} s")

    try:
        for instance in instances:  # one after the other: the first creates the schema and the vault key
            await instance.start()
        journal = make_service(sandbox, state, run_worker=False, DATABASE_URL=postgres_url)  # reads the journal; runs nothing
        await journal.start()

        # ---- phase 1: 20 setups, random kills of random instances -------------------------------------------------
        background = asyncio.ensure_future(fleet.random_kills(journal))
        gate = asyncio.Semaphore(PARALLEL)

        async def one(user: User) -> None:
            async with gate:
                try:
                    await user.run()
                except Lost as exc:
                    user.setup.lost = f"{exc}\n      the chat shows (newest last): {user.seen()}"

        await asyncio.gather(*(one(u) for u in users[:SETUPS]))
        fleet.done.set()
        background.cancel()
        await asyncio.gather(background, return_exceptions=True)
        turn = 0
        while len(kills(instances)) < MIN_KILLS or not all(i.kills for i in instances):  # each instance killed, enough in all
            instance = next((i for i in instances if not i.kills), instances[turn % len(instances)])
            turn += 1
            task = fleet.kill(instance, "after the setups, to reach the minimum number of kills")
            await (task or instance.wait_up())
        await asyncio.gather(*(i.wait_up() for i in instances))
        try:
            await settle(journal, timeout=30)
        except AssertionError as exc:
            problems.append(str(exc))

        # ---- phase 2: fail-over, the killed instance left down ----------------------------------------------------
        for what, run in (("job", lambda u: job_failover(fleet, journal, sandbox, u)), ("notifier", lambda u: notifier_failover(fleet, journal, u))):
            user = users[SETUPS] if what == "job" else users[SETUPS + 1]
            try:
                result = await run(user)
            except Lost as exc:
                user.setup.lost = f"{exc}\n      the chat shows (newest last): {user.seen()}"
                continue
            seconds = result if isinstance(result, float) else result[0]
            failover[what] = round(seconds, 2)
            if isinstance(result, tuple):
                failover["notifier_from_to"] = f"{result[1]} → {result[2]}"
            if seconds > FAILOVER_TARGET_S:
                problems.append(f"{what} fail-over took {seconds:.1f} s, more than LEASE_TTL + 5 s = {FAILOVER_TARGET_S:.0f} s")
        try:
            await settle(journal, timeout=30)
        except AssertionError as exc:
            problems.append(str(exc))

        problems += check_dialogs(everyone, teams)
        problems += await check_jobs(journal, everyone)
        problems += await check_tenant(sandbox, journal, everyone)
        problems += await check_cards(fleet, journal, users)
        problems += await secret_scan(made, len(everyone), instances, connector, state, journal)

        notes = [f"setup {s.n}: {note}" for s in everyone for note in s.notes]
        (tmp_path / "teams.txt").write_text(fleet.timeline())  # beside the instance logs, for a look after a run
        figures(seed=SEED, instances=INSTANCES, setups=len(everyone), lease_ttl_s=LEASE_TTL_S, failover_target_s=FAILOVER_TARGET_S,
                failover_s=failover, kills=kills(instances), skipped_kills=fleet.skipped, redeliveries=teams.redeliveries,
                served={i.name: i.served for i in instances}, lost=sum(1 for s in everyone if s.lost), problems=problems,
                oddities=notes, seconds=round(time.monotonic() - fleet.began, 1))
        if problems:
            EVIDENCE.mkdir(parents=True, exist_ok=True)
            for instance in instances:
                (EVIDENCE / f"instances-{SEED}-{instance.name}.log").write_bytes(instance.log_path.read_bytes())
            (EVIDENCE / f"instances-{SEED}-teams.txt").write_text(fleet.timeline())
        assert not problems, (f"{len(problems)} problems (instance logs: {EVIDENCE}/instances-{SEED}-*.log):\n" + "\n".join(problems)
                              + "\noddities the users saw: " + ("\n  ".join(notes) or "none") + context())
        assert set(failover) >= {"job", "notifier"}, context()
        assert all(i.served and i.kills for i in instances), context()  # every instance answered Teams and was killed
        print("oddities the users saw: " + ("\n  ".join(notes) or "none") + context())  # shown with -s / -rP
    finally:
        fleet.done.set()
        if journal is not None:
            await journal.close()
        await asyncio.gather(*(i.stop() for i in instances), return_exceptions=True)
        await front.cleanup()
        await session.close()


def check_dialogs(everyone: list[Setup], teams: RoundRobin) -> list[str]:
    return ([f"setup {s.n} ({s.agent}) LOST: {s.lost}" for s in everyone if s.lost]
            + [f"an instance answered an error: {e}" for e in teams.errors])


async def check_jobs(journal: Any, everyone: list[Setup]) -> list[str]:
    """One job per setup, each completed."""
    problems = []
    for s in everyone:
        mine = await journal.list_jobs(tag=("conversation", s.chat_id))
        if len(mine) != 1 or mine[0].status != JobStatus.COMPLETED:
            problems.append(f"setup {s.n} ({s.agent}) has {len(mine)} job(s), not one completed one: {[j.status.value for j in mine]}")
    return problems


async def check_tenant(sandbox: Sandbox, journal: Any, everyone: list[Setup]) -> list[str]:
    """One app registration per setup, holding exactly the one secret its job recorded; every agent authenticates manually."""
    problems = []
    tenant = await sandbox.snapshot()
    apps = [a for a in tenant["applications"] if str(a.get("uniqueName") or "").startswith("cps-auth-")]
    names = sorted(a["displayName"] for a in apps)
    if len(apps) != len(everyone) or len(set(names)) != len(everyone):
        problems.append(f"{len(apps)} app registrations for {len(everyone)} setups: {names}")
    by_object = {a["id"]: a for a in apps}
    for job in await journal.list_jobs():
        record = await journal.load(job.id)
        app = by_object.get(record.data.get("app_object_id"))
        if app is None:
            problems.append(f"job {job.id[:8]} ({job.agent.name}) recorded no app registration (job data: {sorted(record.data)})")
            continue
        secrets = [p["keyId"] for p in app["passwordCredentials"]]
        if secrets != [record.data.get("secret_key_id")]:
            problems.append(f"job {job.id[:8]} ({job.agent.name}): the app has secrets {[k[:8] for k in secrets]}, the job recorded "
                            f"{str(record.data.get('secret_key_id'))[:8]}: a secret nobody holds")
    agents = {b["name"]: b for b in tenant["environments"]["contoso"]["bots"]}
    problems += [f"setup {s.n} ({s.agent}) does not authenticate manually" for s in everyone if agents[s.agent]["authenticationmode"] != 3]
    return problems


async def check_cards(fleet: Fleet, journal: Any, users: list[User]) -> list[str]:
    """Every recorded progress card shows Done; reminders and completion cards exactly once, in their own chat, across all
    instances (an extra copy only where the instance that posted the first was killed right after it reached Teams)."""
    problems = []
    conversations = ConversationStore(BotStorage(journal.store.kv))
    for user in users:
        s = user.setup
        job = await job_of(journal, s.chat_id)
        record = await conversations.get(job.id) if job else None
        progress = [c for c in fleet.connector.calls if c.conversation_id == s.chat_id and c.method == "POST" and card_titled(f"Setting up '{s.agent}'")(c)]
        for card in progress:
            shown = user.current(card)
            heading = str(shown.cards[0]["body"][0].get("text", "")) if shown.cards else ""
            if record is not None and card.new_id == record.progress_activity_id:
                if ": Done" not in heading:
                    problems.append(f"setup {s.n} ({s.agent}): its progress card still says '{heading}'")
            elif excuse := fleet.crash_window(s.chat_id, f"Setting up '{s.agent}'"):
                s.notes.append(f"an extra progress card ('{heading}'): {excuse}")
            else:
                problems.append(f"setup {s.n} ({s.agent}): a progress card the bot did not record ('{heading}'), "
                                f"recorded: {record.progress_activity_id if record else None}, posted: {[c.new_id for c in progress]}")
        posts = [c for c in fleet.connector.calls if c.conversation_id == s.chat_id and c.method == "POST"]
        for words, what in ((f"Reminder set: secured access for '{s.agent}'", "'Reminder set' card"),
                            (f"Secured access is now in effect for '{s.agent}'", "'now in effect' reminder"),
                            (f"'{s.agent}' is set up", "completion card")):
            count = sum(1 for c in posts if card_titled(words)(c))
            if count > 1 and (excuse := fleet.crash_window(s.chat_id, words)):
                s.notes.append(f"the {what} was posted {count} times: {excuse}")
            elif count != 1:
                arrived = [f"{when - fleet.began:.2f}s by {who}" for when, chat, body, who in fleet.arrivals if chat == s.chat_id and words in body]
                problems.append(f"setup {s.n} ({s.agent}): the {what} was posted {count} times (arrived {arrived})")
        if [c for c in fleet.connector.calls if c.conversation_id != s.chat_id and f"'{s.agent}'" in c.text]:
            problems.append(f"setup {s.n} ({s.agent}): messages about it went to another chat")
        if user.approved_at >= 0 and record is not None:
            s.notes += stale_guided_cards(fleet, user, record)
    return problems


def stale_guided_cards(fleet: Fleet, user: User, record: Any) -> list[str]:
    """Guided-step cards of a finished setup that still offer their buttons: the one the bot recorded for the step (it
    was never updated), or a copy it did not record (posted again after a kill)."""
    notes = []
    recorded = {StepName(step).label: ids[0] for step, ids in record.guided.items() if ids}
    for card in user.posts("Your turn: ", user.approved_at):
        if not buttons(card):
            continue
        heading = str(card.cards[0]["body"][0].get("text", ""))
        label = heading.removeprefix("Your turn: ")
        if recorded.get(label) == (card.activity_id if card.method == "PUT" else card.new_id):
            notes.append(f"the card '{heading}' the bot recorded still offers its buttons")
        else:
            excuse = fleet.crash_window(user.chat.id, heading) or "no kill near its post"
            notes.append(f"an unrecorded copy of the card '{heading}' still offers its buttons ({excuse})")
    return notes


async def secret_scan(made: list[str], total: int, instances: list[Instance], connector: Connector, state: Path, journal: Any) -> list[str]:
    """No client secret in any instance's log, any post, any file written, any row of any PostgreSQL table."""
    places = {f"{i.name} log": i.log_path.read_text(errors="replace") for i in instances}
    places["teams"] = "\n".join(json.dumps(c.body) for c in connector.calls)
    places |= {str(p): p.read_bytes().decode("latin-1") for p in state.rglob("*") if p.is_file()}
    async with journal.store.db.read() as tx:
        for table in [r["tablename"] for r in await tx.fetchall("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]:
            places[f"table {table}"] = json.dumps(await tx.fetchall(f"SELECT * FROM {table}"), default=str)
    leaks = sorted({where for secret in made for where, text in places.items() if secret in text})
    return [f"{len(made)} secrets made for {total} setups; secret text found in: {leaks}"] if len(made) < total or leaks else []

