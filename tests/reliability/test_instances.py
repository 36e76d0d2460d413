"""Three bot instances on one PostgreSQL database, killed at random: 20 setups, then two measured fail-overs.

Three real `python app.py` processes (each its own PORT and INSTANCE_ID) share one PostgreSQL database (the
`postgres_url` fixture), one sandbox and one fake Bot Connector. Teams is emulated by a client that delivers each
activity to the next instance in turn (round-robin, as a load balancer would); an instance that is down is skipped and
the activity goes to another, and a delivery that fails is made again, the same activity, to the next instance up.

Phase 1: 20 setups (client secret path) while a random instance is killed -9 at random moments and restarted (same
INSTANCE_ID and port, so it resumes its own leases at once). The final checks are those of test_bot_kill.py, across all
instances: one app registration per setup, exactly the secret each job recorded, every recorded progress card showing
Done, each reminder and completion card posted exactly once (a copy more is accepted only when the instance that posted
each copy but the last was killed within moments of it reaching Teams: the Bot Connector has no idempotent post), no
dialog lost, no secret in any instance's log, any post, any file or any PostgreSQL table.

Phase 2: fail-over, measured. LEASE_TTL is 5 s here, which is also the notifier's lease (app.py never gives the
notifier less than 5 s), so the one target, LEASE_TTL + 5 s, is honest for both:
- the job: the instance holding a running job's lease is killed and stays down, inside a step (the instant the sandbox
  has created the app registration); the time until a new event of that job appears (another instance took over);
- the notifier: the instance holding the "notifier" lease is killed and stays down once it has recorded a job's progress
  card, while the job runs; the time until another instance posts or updates that progress card.

The harness is in fleet.py (the instances, round-robin Teams, who posted what) and failover.py (the two measurements).
KILL_SEED=<n> runs another plan; figures go to test-output/reliability/<test>.json, instance logs there on failure.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import Any, Callable

import aiohttp
import pytest

import sandbox.graph as sandbox_graph
from bot.conversations import ConversationStore
from bot.storage import BotStorage
from provisioning import JobStatus, StepName
from sandbox import Sandbox
from sandbox.identity import new_secret as real_new_secret
from tests.fixtures.connector import Connector, card_titled
from tests.fixtures.provisioning import make_service, service_env
from tests.fixtures.sandbox import sandbox_http
from tests.reliability.failover import FAILOVER_TARGET_S, LEASE_TTL_S, job_failover, notifier_failover
from tests.reliability.fleet import Fleet, Instance, RoundRobin, job_of, kills, settle
from tests.reliability.test_bot_kill import NOT_INHERITED, Lost, Setup, User, buttons, free_port

ROOT = Path(__file__).resolve().parents[2]
EVIDENCE = ROOT / "test-output" / "reliability"
SEED = int(os.environ.get("KILL_SEED", "20261202"))
INSTANCES = 3
SETUPS = 20
PARALLEL = 6  # setups in flight at once
MIN_KILLS = 8


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

    state = tmp_path / "fleet-state"  # the vault key file, the same for every instance (the database holds everything else)
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
            excuse = fleet.unrecorded(user.chat.id, heading) or "NO kill near any of its posts"
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
