"""The two measured fail-overs: the instance running a job, and the one posting to Teams, each killed -9 and left
down; the time until another instance takes over. LEASE_TTL is 5 s, which is also the notifier's lease (app.py never
gives the notifier less than 5 s), so the one target, LEASE_TTL + 5 s, is honest for both.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bot.conversations import ConversationStore
from bot.storage import BotStorage
from sandbox import Sandbox
from tests.fixtures.connector import card_titled
from tests.reliability.fleet import Fleet, Instance, holder, job_events, job_of
from tests.reliability.test_bot_kill import GUIDED, WAIT, User

LEASE_TTL_S = 5.0  # the job leases' TTL, and (app.py's floor) the notifier's
FAILOVER_TARGET_S = LEASE_TTL_S + 5.0
PROGRESS = "Setting up '"  # the progress card: only the notifier posts and updates it (turns update guided-step cards too)


async def to_plan(user: User) -> tuple[Any, int]:
    """The user's dialog up to the plan card (Approve not yet clicked)."""
    name = user.setup.agent
    details = await user.to_details()
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
