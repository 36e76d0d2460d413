"""kill -9 of the bot process at random points during 20 setups, restarted each time, with the tenant state in the
sandbox checked afterwards: one app registration per setup, no orphan secrets, every reminder delivered exactly once,
no dialog lost.

The sandbox (the emulated cloud) and the fake Bot Connector run in the test process; the bot runs as `python app.py`,
a real process, restarted on the same port with the same state directory after every kill. Teams is emulated by a
client that delivers an activity again when delivering it failed (the bot died while handling it, or was down), as
Teams retries a failed delivery; users click what the chat shows them, and nothing else.

Where the bot is killed comes from a seeded plan. Ten setups each draw a moment where a crash tells the most, and the
test kills the bot exactly then: between two dialog cards; during the Approve turn (when the progress card reaches
Teams, or some milliseconds after the click); while the job applies a step (the instant the sandbox has created the
app registration or the client secret but before the bot hears back, or just after publishing started); just after a
"Do it in the sandbox" click (some milliseconds later, or the instant the emulated Copilot Studio has done it); and
the instant a guided-step card has reached Teams, before the bot has recorded it. Kills at random moments come on top,
and every kill also hits whatever the other setups are doing. No kill is aimed between the post of a reminder or
completion card and the bot recording it: no implementation can post a Teams message exactly once across that crash
(the Bot Connector has no idempotent post), so only random kills can land there.

The seed, the plan and the kills are in the failure message; BOT_KILL_SEED=<n> runs another plan. The figures (kills,
problems, oddities) go to test-output/reliability/<test>.json, and on failure the bot's log next to them.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote

import aiohttp
import pytest
from aiohttp import web

import sandbox.graph as sandbox_graph
from bot.storage import BotStorage
from provisioning import EventKind, JobStatus, StepName
from sandbox import Sandbox
from sandbox.identity import new_secret as real_new_secret
from store import Store, open_database
from tests.e2e.helpers import action, inputs
from tests.fixtures.connector import Call, Connector, card_titled, serve_every_path
from tests.fixtures.provisioning import make_service, service_env
from tests.fixtures.sandbox import sandbox_http
from tests.fixtures.teams import RILEY, message, personal, submit

ROOT = Path(__file__).resolve().parents[2]
EVIDENCE = ROOT / "test-output" / "reliability"
SEED = int(os.environ.get("BOT_KILL_SEED", "20261124"))
SETUPS = 20
SOAK_SETUPS = 60
PARALLEL = 7  # setups in flight at once
MIN_KILLS = 8
WAIT = 30.0  # the longest a user waits for something to show (kills, restarts and lease take-overs included)
SANDBOX_BUTTON = "Do it in the sandbox (emulated Copilot Studio)"
GUIDED = (StepName.COPILOT_AUTHENTICATION, StepName.SECURED_ACCESS, StepName.CUSTOMER_SERVICE_CONNECTION)
BETWEEN_CARDS = "between Next and Review plan"
AFTER_APPROVE = "right after Approve"
DURING_APPLY = "during apply"
AFTER_GUIDED_CLICK = "right after a guided-step click"
AFTER_GUIDED_CARD = "right after a guided-step card reached Teams"
KILL_POINTS = (BETWEEN_CARDS, AFTER_APPROVE, DURING_APPLY, AFTER_GUIDED_CLICK, AFTER_GUIDED_CARD)
TARGETED = 2 * len(KILL_POINTS)  # setups that each decide one kill (the random kills come on top)
# Settings of the machine running the tests that must not reach the bot (a developer's real bot or tenant).
NOT_INHERITED = ("MicrosoftAppId", "MicrosoftAppPassword", "MicrosoftAppType", "MicrosoftAppTenantId", "SETUP_REQUESTERS",
                 "SETUP_APPROVERS", "ALLOWED_TENANT_IDS", "REQUIRE_SECOND_APPROVER", "SECRET_ENCRYPTION_KEY",
                 "PROVISIONING_CLIENT_CERTIFICATE_PATH", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BotProcess:
    """`python app.py` on one port and one state directory; kill() is kill -9 followed by a restart."""

    def __init__(self, env: dict[str, str], workdir: Path, log_path: Path, session: aiohttp.ClientSession) -> None:
        self.env, self.workdir, self.log_path, self.session = env, workdir, log_path, session
        self.url = f"http://127.0.0.1:{env['PORT']}"
        self.proc: asyncio.subprocess.Process | None = None
        self.up = asyncio.Event()
        self.began = time.monotonic()
        self.kills: list[str] = []
        self.kill_times: list[float] = []
        self.starts = 0
        self.restart: asyncio.Task[None] | None = None

    def clock(self) -> str:
        return f"{time.monotonic() - self.began:5.1f}s"

    async def start(self) -> None:
        self.starts += 1
        with self.log_path.open("ab") as log:
            log.write(f"===== start {self.starts} at {self.clock()} =====\n".encode())
            log.flush()
            # app.py as `make run` runs it, in a directory of its own so that no developer's `.env` is read
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, str(ROOT / "app.py"), cwd=self.workdir, env=self.env,
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.returncode is not None:
                raise AssertionError(f"the bot exited with {self.proc.returncode} while starting:\n{self.log_tail()}")
            try:
                async with self.session.get(f"{self.url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        break
            except (aiohttp.ClientError, asyncio.TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the bot did not answer /healthz within 30 s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        self.up.set()

    def kill_now(self, reason: str) -> asyncio.Task[None] | None:
        """kill -9 at once (before the caller's next line runs), and start again on the same port and state in the
        background. None if the bot is down already (another kill is restarting it)."""
        if self.proc is None or not self.up.is_set() or (self.restart is not None and not self.restart.done()):
            return None
        self.up.clear()
        self.proc.send_signal(signal.SIGKILL)
        self.kill_times.append(time.monotonic())
        self.kills.append(f"{self.clock()} {reason}")
        self.restart = asyncio.ensure_future(self._restart())
        return self.restart

    async def _restart(self) -> None:
        assert self.proc is not None
        await self.proc.wait()
        await self.start()

    async def kill(self, reason: str) -> None:
        task = self.kill_now(reason)
        if task is not None:
            await task

    async def wait_up(self) -> None:
        """Until the bot answers; fails if it died by itself or did not come back after a kill."""
        deadline = time.monotonic() + WAIT
        while not self.up.is_set():
            if self.restart is not None and self.restart.done() and self.restart.exception() is not None:
                raise AssertionError(f"the bot did not come back after a kill: {self.restart.exception()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"the bot did not come back within {WAIT:.0f} s:\n{self.log_tail()}")
            await asyncio.sleep(0.05)
        if self.proc is not None and self.proc.returncode is not None:
            raise AssertionError(f"the bot died by itself (exit {self.proc.returncode}):\n{self.log_tail()}")

    def reap(self) -> None:
        """kill -9 without waiting: for the teardown, which also runs when the test timed out."""
        if self.proc is not None and self.proc.returncode is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    async def stop(self) -> None:
        if self.restart is not None:
            await asyncio.gather(self.restart, return_exceptions=True)
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 25)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


class Teams:
    """Delivers activities to the bot's /api/messages. A delivery that fails is made again, the same activity (same
    id), once the bot answers again: Teams retries a failed delivery."""

    def __init__(self, bot: BotProcess, session: aiohttp.ClientSession) -> None:
        self.bot, self.session = bot, session
        self.redeliveries = 0
        self.errors: list[str] = []

    async def send(self, body: dict[str, Any]) -> tuple[int, Any]:
        deadline = time.monotonic() + WAIT
        while True:
            await self.bot.wait_up()
            try:
                async with self.session.post(f"{self.bot.url}/api/messages", json=body,
                                             timeout=aiohttp.ClientTimeout(total=WAIT)) as r:
                    text = await r.text()
                    status = r.status
            except (aiohttp.ClientError, asyncio.TimeoutError):
                if time.monotonic() > deadline:
                    raise AssertionError(f"could not deliver a {body['type']} for {WAIT} s") from None
                self.redeliveries += 1
                await asyncio.sleep(0.05)
                continue
            if status not in (200, 201):
                self.errors.append(f"HTTP {status} for {json.dumps(body.get('value') or body.get('text'))[:120]}: {text[:200]}")
            return status, json.loads(text) if text else None


@dataclass
class Setup:
    n: int
    agent: str
    chat_id: str = ""
    kill_at: str = ""  # one of KILL_POINTS, or "" (only random kills hit it)
    variant: str = ""  # which moment of kill_at
    kill_delay: float = 0.0
    kill_step: StepName | None = None
    lost: str = ""  # why the user could not finish, if they could not
    notes: list[str] = field(default_factory=list)  # oddities the user saw that did not stop them

    def reason(self) -> str:
        step = f" {self.kill_step.value}" if self.kill_step else ""
        return f"setup {self.n}: {self.kill_at}{step}, {self.variant.format(ms=self.kill_delay * 1000)}"


Post = Callable[[str, str, str], bool]  # (method, conversation id, body text) → kill now?
Write = Callable[[str, dict[str, Any]], bool]  # (kind, document) the sandbox stores → kill now?


class Harness:
    """Kills the bot when the kill plan says: at moments the Bot Connector, the sandbox or the journal shows."""

    def __init__(self, bot: BotProcess, teams: Teams, connector: Connector, rng: random.Random) -> None:
        self.bot, self.teams, self.connector, self.rng = bot, teams, connector, rng
        self.on_post: list[tuple[Post, str]] = []
        self.on_write: list[tuple[Write, str]] = []
        self.on_event: dict[str, Setup] = {}  # conversation id → setup whose job is killed when a step starts
        self.service_url = connector.url
        self.skipped: list[str] = []  # planned kills that came while the bot was down anyway
        self.arrivals: list[tuple[float, str, str]] = []  # (when, conversation, body) of every post that reached Teams
        self.done = asyncio.Event()

    def arm_post(self, when: Post, reason: str) -> None:
        self.on_post.append((when, reason))

    def arm_write(self, when: Write, reason: str) -> None:
        self.on_write.append((when, reason))

    def _fire(self, armed: list[tuple[Any, str]], *args: Any) -> None:
        for entry in list(armed):
            when, reason = entry
            if when(*args):
                armed.remove(entry)
                if self.bot.kill_now(reason) is None:
                    self.skipped.append(f"{self.bot.clock()} {reason} (the bot was restarting)")

    async def kill_later(self, delay: float, reason: str) -> None:
        await asyncio.sleep(delay)
        task = self.bot.kill_now(reason)
        if task is None:
            self.skipped.append(f"{self.bot.clock()} {reason} (the bot was restarting)")
        else:
            await task

    # ---- the Bot Connector, as the bot sees it -------------------------------------------------------------------

    async def front(self, session: aiohttp.ClientSession) -> web.AppRunner:
        """The serviceUrl the bot posts to: every call goes on to the fake Bot Connector, and the kill plan may kill the
        bot once a message has reached it, before its answer (the new message's id) reaches the bot."""

        async def relay(request: web.Request) -> web.Response:
            body = await request.read()
            async with session.request(request.method, self.connector.url.rstrip("/") + request.raw_path, data=body,
                                       headers={"Content-Type": request.headers.get("Content-Type", "application/json")}) as r:
                status, answer = r.status, await r.read()
            parts = request.raw_path.split("?")[0].split("/")
            conversation = unquote(parts[3]) if len(parts) > 3 else ""
            if request.method == "POST":
                self.arrivals.append((time.monotonic(), conversation, body.decode("utf-8", "replace")))
            self._fire(self.on_post, request.method, conversation, body.decode("utf-8", "replace"))
            return web.Response(status=status, body=answer, content_type="application/json")

        runner, self.service_url = await serve_every_path(relay)
        return runner

    # ---- the tenant, as the sandbox stores it ----------------------------------------------------------------------

    def watch_tenant(self, sandbox: Sandbox) -> Callable[[], None]:
        """Sees every document the sandbox stores; the kill plan may kill the bot the instant the tenant has changed,
        before the sandbox answers the bot. Returns the undo."""
        store = sandbox.store
        original = store.put

        async def put(kind: str, oid: str, doc: dict[str, Any]) -> None:
            await original(kind, oid, doc)
            self._fire(self.on_write, kind, doc)

        store.put = put  # type: ignore[method-assign]
        return lambda: setattr(store, "put", original)

    # ---- random moments, and the journal -------------------------------------------------------------------------------

    async def random_kills(self) -> None:
        """Kills at random moments while setups run, whatever they are doing."""
        while not self.done.is_set():
            try:
                await asyncio.wait_for(self.done.wait(), self.rng.uniform(3.0, 6.0))
            except asyncio.TimeoutError:
                await self.bot.kill("at a random moment")

    async def watch_journal(self, journal: Any) -> None:
        """Kills the bot some milliseconds after a chosen job starts a chosen step (as the journal shows it)."""
        seq, jobs = await journal.last_seq(), {}
        while not self.done.is_set():
            for event in await journal.events_after(seq, 500):
                seq = event.seq
                if event.kind == EventKind.JOB_STARTED:
                    jobs[event.job_id] = (await journal.load(event.job_id)).tags.get("conversation", "")
                setup = self.on_event.get(jobs.get(event.job_id, ""))
                if setup is not None and event.kind == EventKind.STEP_STARTED and event.step == setup.kill_step:
                    del self.on_event[setup.chat_id]
                    asyncio.ensure_future(self.kill_later(setup.kill_delay, setup.reason()))
            await asyncio.sleep(0.02)


class Lost(Exception):
    """The user cannot go on with the setup from what the chat shows."""


class User:
    """One person doing one setup in a chat of their own, clicking what Teams shows them."""

    def __init__(self, harness: Harness, setup: Setup) -> None:
        self.h, self.setup, self.connector = harness, setup, harness.connector
        self.chat = personal(RILEY)
        setup.chat_id = self.chat.id
        self.approved_at = -1  # where in the Bot Connector's calls the setup's Approve was, once it is finished

    # ---- what the chat shows ------------------------------------------------------------------------------------

    def mine(self, words: str, method: str | None = None) -> Callable[[Call], bool]:
        return lambda c: c.conversation_id == self.chat.id and (method is None or c.method == method) and card_titled(words)(c)

    async def latest(self, words: str, *, after: int, method: str | None = None) -> Call:
        """The newest card with these words since `after` (a click delivered twice may have produced two)."""
        try:
            await self.connector.wait_for(self.mine(words, method), after=after, timeout=WAIT)
        except AssertionError:
            raise Lost(f"no card '{words}' within {WAIT:.0f} s") from None
        return [c for c in self.connector.calls[after:] if self.mine(words, method)(c)][-1]

    def current(self, card: Call) -> Call:
        """What Teams shows for this message now: the newest of its post and its updates."""
        activity_id = card.activity_id if card.method == "PUT" else card.new_id
        versions = [c for c in self.connector.calls if c.conversation_id == self.chat.id
                    and ((c.method == "POST" and c.new_id == activity_id) or (c.method == "PUT" and c.activity_id == activity_id))]
        return versions[-1] if versions else card

    def posts(self, words: str, since: int = 0) -> list[Call]:
        """The messages with these words posted since `since`, each as Teams shows it now."""
        return [self.current(c) for c in self.connector.calls[since:] if c.method == "POST" and self.mine(words)(c)]

    def answer(self, mark: int) -> str:
        """What the bot posted in this chat since `mark` (the reply to a click)."""
        return " ".join(c.text for c in self.connector.calls[mark:] if c.conversation_id == self.chat.id and c.method == "POST")

    def seen(self, after: int = 0, last: int = 14) -> list[str]:
        out = []
        for c in self.connector.calls[after:]:
            if c.conversation_id == self.chat.id:
                heading = " / ".join(str(b.get("text", "")) for b in c.cards[0]["body"][:2])[:110] if c.cards else c.body.get("text")
                out.append(f"{c.method} {heading}")
        return out[-last:]

    # ---- what the user does ---------------------------------------------------------------------------------------

    async def say(self, text: str) -> int:
        mark = len(self.connector.calls)
        status, _ = await self.h.teams.send(message(self.chat, RILEY, self.h.service_url, text))
        assert status in (200, 201), status
        return mark

    async def click(self, card: Call, title: str, **values: Any) -> int:
        act = action(card, title)
        data = dict(act.get("data") or {})
        if act["type"] == "Action.Submit" and act.get("associatedInputs") != "none":
            data = {**inputs(card), **data}
        data.update(values)
        activity_id = card.activity_id if card.method == "PUT" else card.new_id
        mark = len(self.connector.calls)
        status, _ = await self.h.teams.send(submit(self.chat, RILEY, self.h.service_url, activity_id, data))
        assert status in (200, 201), f"setup {self.setup.n}: '{title}' answered {status}"
        return mark

    async def to_details(self) -> Call:
        """/setup copilot, this setup's agent chosen: the details card (2 of 2)."""
        mark = await self.say("/setup copilot")
        choose = await self.latest("Set up an agent: 1 of 2", after=mark)
        choice = next(e for e in choose.cards[0]["body"] if e.get("id") == "agent")
        agent = next(c["value"] for c in choice["choices"] if c["title"].startswith(f"{self.setup.agent} ("))
        mark = await self.click(choose, "Next", agent=agent)
        return await self.latest("Set up an agent: 2 of 2", after=mark)

    async def run(self) -> None:
        s, name, h = self.setup, self.setup.agent, self.h
        details = await self.to_details()
        if s.kill_at == BETWEEN_CARDS:
            await h.kill_later(0, s.reason())  # the dialog must still be waiting on this very card
        mark = await self.click(details, "Review plan", credential="client_secret")  # the secret's lifecycle is what a kill can break
        plan = await self.latest(f"Plan for '{name}'", after=mark)
        if s.kill_at == AFTER_APPROVE and not s.variant.startswith("when"):
            asyncio.ensure_future(h.kill_later(s.kill_delay, s.reason()))
        approved = await self.click(plan, "Approve")
        plan_now = self.current(plan).text
        if "Approved: the setup is running." not in plan_now:
            says = next((words for words in ("Not applied: the tenant changed", "Cancelled", "Refused") if words in plan_now), "")
            s.notes.append(f"after Approve the plan card says '{says}…'" if says else "after Approve the plan card was never updated")
        try:  # the setup's first message: its progress card, or the first step that needs the user
            await self.connector.wait_for(lambda c: c.conversation_id == self.chat.id and c.method == "POST" and (
                card_titled(f"Setting up '{name}'")(c) or card_titled(f"Agent '{name}'. Job")(c)), after=approved, timeout=WAIT)
        except AssertionError:
            raise Lost(f"nothing about the setup within {WAIT:.0f} s of Approve") from None
        progress = self.posts(f"Setting up '{name}'", approved)
        if len(progress) != 1:
            s.notes.append(f"{len(progress)} progress cards were posted")
        for step in GUIDED:
            await self.guided(step, approved, progress[-1] if progress else None)
        await self.latest(f"'{name}' is set up", after=approved)
        self.approved_at = approved

    def stale_cards(self) -> list[str]:
        """Cards of a finished setup that still look unfinished: the bot never updated them."""
        stale = [f"the progress card still says '{c.cards[0]['body'][0].get('text')}'"
                 for c in self.posts(f"Setting up '{self.setup.agent}'", self.approved_at) if ": Done" not in c.cards[0]["body"][0].get("text", "")]
        stale += [f"the card '{c.cards[0]['body'][0].get('text')}' still offers its buttons"
                  for c in self.posts("Your turn: ", self.approved_at) if buttons(c)]
        return stale

    def finished(self, step: StepName, progress: Call | None, since: int) -> bool:
        """The chat shows the step no longer waits: on the progress card, on the step's own card, or the setup is done."""
        if self.posts(f"'{self.setup.agent}' is set up", since):
            return True
        board = self.current(progress).text if progress else ""
        if any(f"{step.label}: {word}" in board for word in ("done", "taking effect", "continued without verification")):
            return True
        return any(not buttons(c) for c in self.posts(f"Your turn: {step.label}", since))

    async def guided(self, step: StepName, since: int, progress: Call | None) -> None:
        """Do the step in the sandbox from its card, as a person would: click, look again, click again if nothing happened."""
        s = self.setup
        clicks = refused = 0
        deadline = time.monotonic() + WAIT
        while not self.finished(step, progress, since):
            if progress and "Stopped: a step failed" in self.current(progress).text:
                raise Lost(f"the job stopped with a failed step before '{step.label}'")
            cards = self.posts(f"Your turn: {step.label}", since)
            if refused >= 4:
                raise Lost(f"'{step.label}': the only card for it is refused as out of date")
            if time.monotonic() > deadline or clicks >= 8:
                raise Lost(f"'{step.label}': " + (f"no card for it within {WAIT:.0f} s" if not cards else f"it still waits after {clicks} clicks"))
            clickable = [c for c in cards if SANDBOX_BUTTON in buttons(c)]
            if not clickable:
                await asyncio.sleep(0.1)
                continue
            card = clickable[-1]
            if s.kill_at == AFTER_GUIDED_CLICK and s.kill_step == step and clicks == 0 and not s.variant.startswith("when"):
                asyncio.ensure_future(self.h.kill_later(s.kill_delay, s.reason()))
            mark = await self.click(card, SANDBOX_BUTTON)
            clicks += 1
            answer = self.answer(mark)
            refused += "out of date" in answer
            if "cannot enter it for you" in answer:
                await self.after_secret_refused(step, card, since, progress)
            until = time.monotonic() + 3
            while time.monotonic() < until and not self.finished(step, progress, since) and self.current(card) is card:
                await asyncio.sleep(0.05)

    async def after_secret_refused(self, step: StepName, card: Call, since: int, progress: Call | None) -> None:
        """The sandbox says the one-time secret was taken already: by an earlier delivery of the same click, which also
        entered it (then Done passes), or not (then the agent never got a secret, and nothing on the cards makes one)."""
        self.setup.notes.append(f"'{step.label}': 'Do it in the sandbox' said the secret was retrieved already; the user selected Done")
        shown = self.current(card)
        if "out of date" in self.answer(await self.click(shown, "Done, check it")):
            raise Lost(f"'{step.label}': the sandbox says the client secret was already retrieved, and Done on the only card "
                       "for the step is refused as out of date")
        until = time.monotonic() + WAIT
        while time.monotonic() < until and not self.finished(step, progress, since):
            now = self.current(card)
            if now is not shown and "Continue anyway" in buttons(now):
                raise Lost(f"'{step.label}': the sandbox says the client secret was already retrieved, the agent never got it "
                           "(Done fails its check), and a waiting job offers no Retry to make a new secret")
            await asyncio.sleep(0.1)


CRASH_WINDOW_S = 0.5


def crash_window(harness: Harness, bot: BotProcess, chat: str, words: str) -> str:
    """Why a message may rightly have been posted twice: the bot was killed after its first copy reached Teams and
    before it could record that (the Bot Connector has no idempotent post, so delivery is at least once). Empty if
    no kill came that close after the first copy."""
    first = next((when for when, conversation, body in harness.arrivals if conversation == chat and words in body), None)
    if first is None:
        return ""
    # a kill up to a moment before the copy arrives counts too: the request was on its way when the bot died
    close = [k - first for k in bot.kill_times if -0.25 <= k - first <= CRASH_WINDOW_S]
    return f"the bot was killed {close[0] * 1000:+.0f} ms from when the first copy reached Teams, before it had recorded it" if close else ""


def buttons(call: Call) -> list[str]:
    return [a.get("title", "") for c in call.cards for a in c.get("actions", [])]


def kill_plan(rng: random.Random, setups: list[Setup], harness: Harness, sandbox: Sandbox) -> str:
    """Ten setups each draw one moment to kill the bot at, two of each kind, and arm it; the others meet only random kills.
    Must run after the users exist (the moments name their chats)."""
    bots = {b["name"]: b for b in sandbox.store.all("bot")}
    for i, s in enumerate(rng.sample(setups, TARGETED)):
        s.kill_at = KILL_POINTS[i % len(KILL_POINTS)]
        s.kill_delay = rng.uniform(0.0, 0.15)
        bot_id, display = bots[s.agent]["botid"], f"{s.agent} - Copilot auth"
        if s.kill_at == BETWEEN_CARDS:
            s.variant = "the user then clicks Review plan on the card they have"
        elif s.kill_at == AFTER_APPROVE:
            s.variant = rng.choice(["when its progress card reaches Teams (the job is journalled, the dialog not yet saved)",
                                    "+{ms:.0f} ms"])
            if s.variant.startswith("when"):
                harness.arm_post(lambda method, chat, text, s=s: method == "POST" and chat == s.chat_id and f"Setting up '{s.agent}'" in text,
                                 s.reason())
        elif s.kill_at == DURING_APPLY:
            s.variant = rng.choice(["app", "secret", "publish"])
            if s.variant == "app":
                s.kill_step, s.variant = StepName.APP_REGISTRATION, "the instant the sandbox has created it, before the bot hears back"
                harness.arm_write(lambda kind, doc, d=display: kind == "application" and doc.get("displayName") == d, s.reason())
            elif s.variant == "secret":
                s.kill_step, s.variant = StepName.CLIENT_SECRET, "the instant the sandbox has added it, before the bot hears back"
                harness.arm_write(lambda kind, doc, d=display: kind == "application" and doc.get("displayName") == d
                                  and bool(doc.get("passwordCredentials")), s.reason())
            else:
                s.kill_step, s.variant, s.kill_delay = StepName.PUBLISH, "+{ms:.0f} ms after it started", rng.uniform(0.0, 0.05)
                harness.on_event[s.chat_id] = s
        elif s.kill_at == AFTER_GUIDED_CLICK:
            s.kill_step = rng.choice(GUIDED)
            s.variant = rng.choice(["+{ms:.0f} ms", "when the emulated Copilot Studio has done it, before the bot hears back"])
            if s.variant.startswith("when"):
                harness.arm_write(done_in_sandbox(sandbox, s.kill_step, bot_id, s.agent), s.reason())
        else:
            s.kill_step = rng.choice(GUIDED)
            s.variant = "before the bot has recorded it"
            label = f"Your turn: {s.kill_step.label}"
            harness.arm_post(lambda method, chat, text, s=s, label=label: method == "POST" and chat == s.chat_id and label in text, s.reason())
    return "; ".join(f"#{s.n} {s.kill_at}" + (f" ({s.kill_step.value})" if s.kill_step else "") for s in setups if s.kill_at)


def done_in_sandbox(sandbox: Sandbox, step: StepName, bot_id: str, agent: str) -> Write:
    """Recognises the document the emulated Copilot Studio stores when it has done this step for this agent."""
    if step == StepName.COPILOT_AUTHENTICATION:
        return lambda kind, doc: kind == "bot" and doc.get("botid") == bot_id and doc.get("authenticationmode") == 3
    if step == StepName.SECURED_ACCESS:  # the document has no bot id: it is the one now stored under the agent's
        return lambda kind, doc: kind == "secured_access" and sandbox.store.get("secured_access", bot_id) is doc
    return lambda kind, doc: kind == "systemuser" and doc.get("fullname") == agent


async def bot_doc(state: Path, key: str) -> dict[str, Any] | None:
    """A document from the bot's own storage, read through its Storage class (whatever the encoding)."""
    db = open_database(str(state / "state.db"))
    await db.open()
    try:
        doc = (await BotStorage(Store(db).kv).read([key])).get(key)
    finally:
        await db.close()
    return doc if isinstance(doc, dict) else None


async def diagnose(journal: Any, state: Path, s: Setup) -> str:
    """The setup's jobs as the journal has them, and what the bot stored about their messages."""
    out = []
    for job in await journal.list_jobs(tag=("conversation", s.chat_id)):
        steps = [f"{x.step.value}={x.status.value}" + (f" ({x.message[:90]})" if x.status.value == "failed" else "")
                 for x in job.steps if x.status.value != "skipped"]
        record = await bot_doc(state, f"jobs/{job.id}")
        kept = {k: record.get(k) for k in ("progress_activity_id", "guided", "reminded", "completed")} if record else "NONE"
        events = [f"{e.kind.value}{':' + e.step.value if e.step else ''}" for e in await journal.events_after(0, 100_000) if e.job_id == job.id]
        audit = [a["action"] for a in await journal.audit_log(job.id) if a["action"] != "microsoft_request"]
        data = {k: v for k, v in (await journal.load(job.id)).data.items() if k in ("app_object_id", "secret_key_id", "secret_intent")}
        out.append(f"job {job.id[:8]} {job.status.value}: {', '.join(steps)}\n      bot's record of it: {kept}\n"
                   f"      journal events: {' '.join(events)}\n      audit: {' '.join(audit)}; job data: {data}")
    return "\n      ".join(out) or "no job in the journal"


async def settle(journal: Any, state: Path, timeout: float) -> None:
    """Wait until the bot's notifier has delivered every journal event (its durable cursor is at the last one)."""
    deadline = time.monotonic() + timeout
    last = await journal.last_seq()
    while time.monotonic() < deadline:
        cursor = await bot_doc(state, "notifier/cursor") or {}
        if int(cursor.get("seq", 0)) >= last:
            await asyncio.sleep(1.0)  # anything posted twice after a restart has been posted by now
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the notifier did not reach event {last} within {timeout} s")


@pytest.mark.timeout(600)
async def test_kill_9_during_20_setups_loses_no_dialog_and_duplicates_nothing(
        sandbox: Sandbox, connector: Connector, tmp_path: Path, reaper: list[BotProcess], figures: Callable[..., None], soak: bool,
        monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random(SEED)
    total = SOAK_SETUPS if soak else SETUPS
    setups = [Setup(n, f"Kill Test {n:02d}") for n in range(1, total + 1)]
    async with sandbox_http(sandbox) as http:  # one published agent per setup, so each makes its own app registration
        for s in setups:
            made = await http.post(f"{sandbox.url}/_sandbox/bots", json={
                "environment": "contoso", "name": s.agent, "schemaname": f"cr9k1_killTest{s.n:02d}", "published": True})
            assert made.status_code == 201, made.text

    state, workdir = tmp_path / "bot", tmp_path / "bot-cwd"
    workdir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in NOT_INHERITED}
    env.update(service_env(sandbox, state))  # PROPAGATION_DELAY 1 s, LEASE_TTL 1.5 s, REPLICATION_SETTLE 0.3 s, …
    env.update({"HOST": "127.0.0.1", "PORT": str(free_port()), "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                "PYTHONUNBUFFERED": "1"})
    session = aiohttp.ClientSession()
    bot = BotProcess(env, workdir, tmp_path / "bot.log", session)
    reaper.append(bot)
    teams = Teams(bot, session)
    harness = Harness(bot, teams, connector, rng)
    users = [User(harness, s) for s in setups]
    plan_text = kill_plan(rng, setups, harness, sandbox)
    front = await harness.front(session)
    unwatch = harness.watch_tenant(sandbox)
    made: list[str] = []  # every client secret Graph hands out, for the final scan
    monkeypatch.setattr(sandbox_graph, "new_secret", lambda: made.append(real_new_secret()) or made[-1])
    journal: Any = None
    problems: list[str] = []

    def context() -> str:
        return (f"\nseed {SEED} (BOT_KILL_SEED); kill plan: {plan_text}\n{len(bot.kills)} kills:\n  " + "\n  ".join(bot.kills)
                + ("\nplanned kills skipped:\n  " + "\n  ".join(harness.skipped) if harness.skipped else "")
                + f"\n{teams.redeliveries} activities delivered again after a failed delivery; {time.monotonic() - bot.began:.1f} s")

    try:
        await bot.start()
        journal = make_service(sandbox, state, run_worker=False)  # reads the bot's journal; runs nothing
        await journal.start()
        background = [asyncio.ensure_future(harness.random_kills()), asyncio.ensure_future(harness.watch_journal(journal))]
        gate = asyncio.Semaphore(PARALLEL)

        async def one(user: User) -> None:
            async with gate:
                try:
                    await user.run()
                except Lost as exc:
                    user.setup.lost = f"{exc}\n      the chat shows (newest last): {user.seen()}"

        await asyncio.gather(*(one(u) for u in users))
        harness.done.set()
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        while len(bot.kills) < MIN_KILLS:  # kills are skipped while a restart is under way: make up for them
            await bot.kill("after the setups, to reach the minimum number of kills")
        await bot.kill("after the setups: the last restart, left to finish")
        try:
            await settle(journal, state, timeout=20)  # the last bot caught up with every event
        except AssertionError as exc:
            problems.append(str(exc))

        # no dialog lost
        for s in setups:
            if s.lost:
                problems.append(f"setup {s.n} ({s.agent}) LOST: {s.lost}\n      {await diagnose(journal, state, s)}")
        problems += [f"the bot answered an error: {e}" for e in teams.errors]

        # one job per setup, every one completed
        jobs = await journal.list_jobs()
        by_chat: dict[str, list[Any]] = {}
        for job in jobs:
            by_chat.setdefault(job.tags.get("conversation", ""), []).append(job)
        for s in setups:
            mine = by_chat.get(s.chat_id, [])
            if len(mine) != 1 or (mine[0].status != JobStatus.COMPLETED and not s.lost):
                problems.append(f"setup {s.n} ({s.agent}) has {len(mine)} job(s), not one completed one\n      {await diagnose(journal, state, s)}")

        # the tenant: one app registration per setup, and exactly the one secret its job recorded
        tenant = await sandbox.snapshot()
        apps = [a for a in tenant["applications"] if str(a.get("uniqueName") or "").startswith("cps-auth-")]
        names = sorted(a["displayName"] for a in apps)
        if len(apps) != total or len(set(names)) != total:
            problems.append(f"{len(apps)} app registrations for {total} setups: {names}")
        by_object = {a["id"]: a for a in apps}
        for job in jobs:
            record = await journal.load(job.id)
            app = by_object.get(record.data.get("app_object_id"))
            if app is None:
                problems.append(f"job {job.id[:8]} ({job.agent.name}) recorded no app registration (job data: {sorted(record.data)})")
                continue
            secrets = [(p["keyId"], p.get("displayName")) for p in app["passwordCredentials"]]
            if [k for k, _ in secrets] != [record.data.get("secret_key_id")]:
                problems.append(f"job {job.id[:8]} ({job.agent.name}): the app has secrets {[(k[:8], n) for k, n in secrets]}, "
                                f"the job recorded {str(record.data.get('secret_key_id'))[:8]}: a secret nobody holds")
        agents = {b["name"]: b for b in tenant["environments"]["contoso"]["bots"]}
        for s in setups:
            if not s.lost and agents[s.agent]["authenticationmode"] != 3:
                problems.append(f"setup {s.n} ({s.agent}) completed, but the agent does not authenticate manually")

        # every reminder, and every completion card, exactly once, in the setup's own chat
        for s in setups:
            posts = [c for c in connector.calls if c.conversation_id == s.chat_id and c.method == "POST"]
            for words, what in ((f"Reminder set: secured access for '{s.agent}'", "'Reminder set' card"),
                                (f"Secured access is now in effect for '{s.agent}'", "'now in effect' reminder"),
                                (f"'{s.agent}' is set up", "completion card")):
                count = sum(1 for c in posts if card_titled(words)(c))
                if count > 1 and (excuse := crash_window(harness, bot, s.chat_id, words)):
                    s.notes.append(f"the {what} was posted {count} times: {excuse}")
                elif count != 1 and not (count == 0 and s.lost):
                    arrived = [f"{when - bot.began:.2f}s" for when, chat, body in harness.arrivals if chat == s.chat_id and words in body]
                    problems.append(f"setup {s.n} ({s.agent}): the {what} was posted {count} times (arrived at {arrived}) "
                                    f"(the chat has {len(by_chat.get(s.chat_id, []))} job(s))")
            if [c for c in connector.calls if c.conversation_id != s.chat_id and f"'{s.agent}'" in c.text]:
                problems.append(f"setup {s.n} ({s.agent}): messages about it went to another chat")

        # the final secret scan: the bot's own log (all its restarts), every file it wrote, everything posted to Teams
        places = {"bot log": bot.log_path.read_text(errors="replace"), "teams": "\n".join(json.dumps(c.body) for c in connector.calls)}
        places |= {str(p): p.read_bytes().decode("latin-1") for p in state.rglob("*") if p.is_file()}
        leaks = sorted({where for secret in made for where, text in places.items() if secret in text})
        if len(made) < total or leaks:
            problems.append(f"{len(made)} secrets made for {total} setups; secret text found in: {leaks}")

        for user in users:
            if user.approved_at >= 0:
                user.setup.notes += user.stale_cards()
        notes = [f"setup {s.n}: {note}" for s in setups for note in s.notes]
        figures(seed=SEED, setups=total, kills=bot.kills, skipped_kills=harness.skipped, redeliveries=teams.redeliveries,
                lost=sum(1 for s in setups if s.lost), problems=problems, oddities=notes, seconds=round(time.monotonic() - bot.began, 1))
        if problems:
            EVIDENCE.mkdir(parents=True, exist_ok=True)
            (EVIDENCE / f"bot-kill-{SEED}.log").write_bytes(bot.log_path.read_bytes())
        assert not problems, (f"{len(problems)} problems after {len(bot.kills)} kills (bot log: {EVIDENCE}/bot-kill-{SEED}.log):\n"
                              + "\n".join(problems) + "\noddities the users saw: " + ("\n  ".join(notes) or "none") + context())
        assert len(bot.kills) >= MIN_KILLS, context()
        assert any(AFTER_APPROVE in k for k in bot.kills) and any(DURING_APPLY in k for k in bot.kills), context()
        print("oddities the users saw: " + ("\n  ".join(notes) or "none") + context())  # shown with -s / -rP
    finally:
        harness.done.set()
        unwatch()
        if journal is not None:
            await journal.close()
        await bot.stop()
        await front.cleanup()
        await session.close()
