"""A fleet of real bot processes for the reliability tests: each `python app.py` with its own PORT and INSTANCE_ID
(`Instance`), Teams delivering round-robin across them (`RoundRobin`), and `Fleet`: the serviceUrl they all post to,
which knows which instance made each Bot Connector call (by the call's TCP peer: the socket belongs to one process),
kills at random moments, and the crash-window rule for a card Teams got twice. Plus small readers of the shared
database (lease holders, a chat's job, the notifier's low-water mark).
"""

from __future__ import annotations

import asyncio
import json
import random
import signal
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

import aiohttp
import psutil
from aiohttp import web

from bot.storage import BotStorage
from tests.fixtures.connector import Connector, serve_every_path
from tests.reliability.test_bot_kill import WAIT, BotProcess

MAX_RANDOM_KILLS = 12  # during the setups: every restart costs a couple of seconds on a busy machine
CRASH_WINDOW_S = 0.5


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

        runner, self.service_url = await serve_every_path(relay)
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

    def _killed_after(self, when: float, who: str) -> str:
        """The kill of the instance that made a post arriving at `when`, within moments of it; "" if none."""
        suspects = [i for i in self.instances if i.name == who] if who != "?" else self.instances  # "?": gone already
        close = [(k - when, i.name) for i in suspects for k in i.kill_times if -0.25 <= k - when <= CRASH_WINDOW_S]
        return f"{close[0][1]} was killed {close[0][0] * 1000:+.0f} ms from when its copy reached Teams" if close else ""

    def crash_window(self, chat: str, words: str) -> str:
        """Why a card may rightly be in a chat more than once: the instance that posted each copy but the last was killed
        right after that copy reached Teams, before it could record it. Empty if any copy but the last has no such kill."""
        copies = [(when, who) for when, conversation, body, who in self.arrivals if conversation == chat and words in body]
        excuses = [self._killed_after(when, who) for when, who in copies[:-1]]
        return "" if not all(excuses) else "; ".join(excuses)

    def unrecorded(self, chat: str, words: str) -> str:
        """Why a card the bot has no record of may rightly be in a chat: the instance that posted a copy of it was killed
        right after it reached Teams. Empty if no copy was."""
        copies = [(when, who) for when, conversation, body, who in self.arrivals if conversation == chat and words in body]
        return next((excuse for when, who in copies if (excuse := self._killed_after(when, who))), "")

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
