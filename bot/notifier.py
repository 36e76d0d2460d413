"""The one way provisioning events reach Teams.

One instance at a time delivers (the "notifier" lease; another takes over when it stops renewing). It reads the
journal's events after a durable low-water mark and, per job, after the job's own cursor: it posts and updates the
guided-step cards, the propagation reminder and the completion card, and keeps the job's one progress card current.
A job's cursor moves only after its cards were delivered. A post Teams refuses for now (429, 5xx, no answer) is
tried again with backoff, for that job only, until it is delivered; one Teams refuses for good (403, 404: the bot
was removed from the chat) is recorded as a dead letter on the job's Teams record, logged, and shown by `status`.
Posts go to the Bot Connector directly (not through botbuilder's turn pipeline, whose error handler would swallow
a failure and let the cursor move on).

While the requester looks at the client secret (shown, not yet confirmed copied) the secret's guided card is not
updated: in Teams an update replaces the message for everyone, which would take the secret off their screen.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from botbuilder.core import MessageFactory, TurnContext
from botbuilder.schema import Activity, ChannelAccount, ConversationReference, Mention

import cards
from provisioning import ProvisioningService
from provisioning.dates import duration
from provisioning.models import Event, EventKind, JobView, StepName, StepStatus, plan_from_dict
from provisioning.steps.base import copilot_link, entra_link
from store import IDLE_POLL, Fence, KeyValue, Locks

from . import state_codec
from .connector import ConnectorPool
from .conversations import ConversationStore, JobConversation
from .errors import BotError, ConnectorError
from .job_actions import new_card_id

log = logging.getLogger(__name__)
CURSOR_KEY = "notifier/cursor"
LEASE = "notifier"
GUIDED = {StepName.FEDERATED_CREDENTIAL, *(s for s in StepName if s.guided)}  # steps with a card of their own
PERMANENT = frozenset({400, 403, 404, 410})  # Teams will never take it: the bot was removed, the chat is gone, the card is refused
WHAT = {EventKind.JOB_COMPLETED: "completion card", EventKind.SECRET_EXPIRING: "expiry notice", EventKind.DRIFT_FOUND: "drift notice", EventKind.REMINDER_DUE: "reminder", EventKind.PROPAGATION_STARTED: "reminder",
        EventKind.WAITING_FOR_OPERATOR: "card for a step you do"}  # what a dead letter says was not posted
DAY_TWO = {EventKind.SECRET_EXPIRING, EventKind.DRIFT_FOUND, EventKind.DRIFT_RESOLVED}  # the watch's findings
GUIDED_EVENTS = {EventKind.WAITING_FOR_OPERATOR, EventKind.VERIFICATION_FAILED, EventKind.STEP_SUCCEEDED, EventKind.STEP_OVERRIDDEN,
                 EventKind.PROPAGATION_STARTED, EventKind.REMINDER_DUE, EventKind.SECRET_TAKEN, EventKind.SECRET_EXPIRED, EventKind.STEP_STARTED}


@dataclass
class Backoff:
    attempts: int = 0
    until: float = 0.0


@dataclass
class Pass:
    """What one delivery pass did, for the low-water mark and the metrics."""

    pending: set[str] = field(default_factory=set)


class NotLeader(BotError):
    pass


class Notifier:
    def __init__(self, *, connectors: ConnectorPool, app_id: str, service: ProvisioningService, conversations: ConversationStore,
                 kv: KeyValue, locks: Locks, lease_ttl: float = 15.0, poll_interval: float = 1.0, instance: str = "") -> None:
        self.connectors = connectors
        self.app_id = app_id
        self.service = service
        self.conversations = conversations
        self.kv = kv
        self.locks = locks
        self.owner = f"notifier@{instance}" if instance else f"notifier-{uuid.uuid4().hex[:12]}"
        self.lease_ttl = lease_ttl
        self.poll_interval = poll_interval
        self.fence: Fence | None = None
        self.backlog = 0  # undelivered events seen in the last pass (a metric)
        self.dead_letters = 0
        self._backoff: dict[str, Backoff] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="notifier")

    async def stop(self, grace: float = 5.0) -> None:
        """Let the pass under way finish (a card posted is then also recorded as posted, so a restart does not post it
        again), for at most `grace` seconds; then stop."""
        if self._task is not None:
            self._stopping.set()
            done, _ = await asyncio.wait({self._task}, timeout=grace)
            if not done:
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self.fence is not None:
            await self.locks.release(self.fence)
            self.fence = None

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    # ---- the loop --------------------------------------------------------------------------------------------

    async def _cursor(self) -> int:
        found = (await self.kv.read([CURSOR_KEY])).get(CURSOR_KEY)
        return int(state_codec.loads(found[1]).get("seq", 0)) if found else 0

    async def _save_cursor(self, seq: int) -> None:
        await self.kv.write({CURSOR_KEY: ("*", state_codec.dumps({"seq": seq}))})

    async def _lead(self) -> bool:
        fence = await self.locks.acquire(LEASE, self.owner, self.lease_ttl)
        if fence is None:
            self.fence = None
            return False
        if self.fence is None or self.fence.generation != fence.generation:
            log.info("this instance now posts to Teams (notifier lease, generation %d)", fence.generation)
        self.fence = fence
        return True

    async def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            seen = self.service.store.db.changes
            try:
                if await self._lead():
                    await self.deliver_pending()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the cursors; the next pass tries again
                failures += 1
                why = str(exc) if isinstance(exc, BotError) else type(exc).__name__  # the bot's own errors carry no secrets
                log.warning("delivering to Teams failed (%s); trying again", why)
                await self._pause(min(30.0, 0.5 * 2 ** failures) * random.uniform(0.5, 1.0))
                continue
            wait = self._next_wait()
            changed = asyncio.ensure_future(self.service.store.db.wait_for_change(seen, wait))
            await self._pause(wait, changed)

    async def _pause(self, seconds: float, *also: "asyncio.Future[Any]") -> None:
        """Wait `seconds`, or less if one of `also` ends or the notifier is asked to stop."""
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({stopping, *also}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in (stopping, *also):
                waiter.cancel()
            await asyncio.gather(stopping, *also, return_exceptions=True)  # let them unwind (a lock held inside) here

    def _next_wait(self) -> float:
        """The usual poll interval, unless every change is announced (new events wake the notifier) and nothing waits
        for a retry: then the leader with nothing left to deliver polls only often enough to renew its lease (a third
        of it), and another instance only often enough to take the lease over soon after it expires (a tenth of it,
        so a fail-over stays within the lease plus a few seconds); IDLE_POLL at most either way."""
        now = time.monotonic()
        waits = [b.until - now for b in self._backoff.values() if b.until > now]
        poll = self.poll_interval
        if not waits and self.service.store.db.announces_changes:
            if self.fence is None:
                poll = max(poll, min(IDLE_POLL, self.lease_ttl / 10))
            elif self.backlog == 0:
                poll = max(poll, min(IDLE_POLL, self.lease_ttl / 3))
        return max(0.05, min([poll, *waits]))

    async def deliver_pending(self) -> None:
        """One pass: every job with events after its cursor gets its cards, each job on its own."""
        low = await self._cursor()
        events: list[Event] = []
        while len(events) < 10_000:
            page = await self.service.events_after(events[-1].seq if events else low, 500)
            events.extend(page)
            if len(page) < 500:
                break
        by_job: dict[str, list[Event]] = {}
        for e in events:
            by_job.setdefault(e.job_id, []).append(e)
        done = Pass()
        await asyncio.gather(*(self._deliver_job(job_id, job_events, done) for job_id, job_events in by_job.items()))
        self.backlog = sum(1 for e in events if e.job_id in done.pending)
        mark = low
        for e in events:
            if e.job_id in done.pending:
                break
            mark = e.seq
        if mark > low:
            await self._save_cursor(mark)

    async def deliver(self, events: list[Event]) -> None:
        """Deliver these events now (tests and the first pass after a start); raises if any job is left pending."""
        done = Pass()
        by_job: dict[str, list[Event]] = {}
        for e in events:
            by_job.setdefault(e.job_id, []).append(e)
        for job_id, job_events in by_job.items():
            await self._deliver_job(job_id, job_events, done)
        if done.pending:
            raise ConnectorError(f"{len(done.pending)} job(s) still have cards to deliver", status=503)

    async def _deliver_job(self, job_id: str, events: list[Event], done: Pass) -> None:
        record = await self.conversations.get(job_id)
        if record is None:
            return  # a job started from the command line: nothing to show in Teams
        todo = [e for e in events if e.seq > record.delivered_seq]
        if not todo and record.progress_seq >= events[-1].seq:
            return
        backoff = self._backoff.get(job_id)
        if backoff is not None and backoff.until > time.monotonic():
            done.pending.add(job_id)
            return
        try:
            if not record.progress_activity_id:  # the job's one progress card, posted before anything else of it
                await self._check_lead()
                posted = await self._post(record, cards.progress_card(record.progress_card_id, await self.service.get_job(job_id)))
                await self._change(record, lambda r: setattr(r, "progress_activity_id", r.progress_activity_id or posted))
            for event in todo:
                await self._check_lead()
                job = await self.service.get_job(job_id)
                await self._dead_letter_on_refusal(record, WHAT.get(event.kind, "card"), self._special(event, job, record))
                await self._change(record, lambda r, s=event.seq: setattr(r, "delivered_seq", max(r.delivered_seq, s)))
            last = events[-1].seq
            if record.progress_seq < last:
                await self._check_lead()
                await self._dead_letter_on_refusal(record, "progress card", self._progress(record, await self.service.get_job(job_id)))
                await self._change(record, lambda r: setattr(r, "progress_seq", max(r.progress_seq, last)))
        except ConnectorError as exc:
            state = self._backoff.setdefault(job_id, Backoff())
            state.attempts += 1
            delay = min(60.0, 0.5 * 2 ** state.attempts) * random.uniform(0.7, 1.0)
            state.until = time.monotonic() + delay
            log.warning("Teams did not take a card for job %s (%s); trying again in %.1f s", job_id[:8], exc, delay)
            done.pending.add(job_id)
            return
        self._backoff.pop(job_id, None)

    async def _check_lead(self) -> None:
        if self.fence is None or not await self.locks.renew(self.fence, self.lease_ttl):
            self.fence = None
            raise NotLeader("another instance took over posting to Teams")

    async def _dead_letter_on_refusal(self, record: JobConversation, what: str, delivery: Any) -> None:
        """Run a delivery; if Teams refuses it for good, record a dead letter instead of trying forever."""
        try:
            await delivery
        except ConnectorError as exc:
            if exc.status not in PERMANENT:
                raise
            self.dead_letters += 1
            letter = {"at": datetime.now(timezone.utc).isoformat(), "what": what, "status": exc.status, "code": exc.code}
            log.warning("Teams refused %s for job %s for good (%s %s); recorded as a dead letter", what, record.job_id[:8], exc.status, exc.code)
            await self._change(record, lambda r: r.dead_letters.append(letter))

    # ---- what each event shows ----------------------------------------------------------------------------------

    async def _special(self, event: Event, job: JobView, record: JobConversation) -> None:
        """Cards for one event. Each post is recorded right after it is made; a crash in between makes the post happen
        again after a restart (at least once: Teams offers no way to ask whether it arrived)."""
        step = event.step
        sandbox = self.service.sandbox_available
        if step in GUIDED and event.kind in GUIDED_EVENTS:
            assert step is not None
            view = job.step(step)
            existing = record.guided.get(step.value)
            secret_on_screen = step == StepName.COPILOT_AUTHENTICATION and job.secret_available and job.secret_shown
            if event.kind == EventKind.WAITING_FOR_OPERATOR and view.status == StepStatus.WAITING_FOR_OPERATOR and not secret_on_screen:
                card_id = new_card_id()
                card = cards.guided_step_card(card_id, job, view, sandbox=sandbox, secret_available=job.secret_available)
                if existing and existing[0]:  # the new card id first, so a click on the updated card is never taken for a stale one
                    await self._set_guided(record, step.value, existing[0], card_id)
                    await self._update(record, existing[0], card)
                else:  # the card id is saved before the card is posted, so a quick click is never taken for a stale one
                    await self._set_guided(record, step.value, "", card_id)
                    await self._set_guided(record, step.value, await self._post(record, card), card_id)
            elif existing and existing[0] and not secret_on_screen and event.kind != EventKind.STEP_STARTED:
                card = cards.guided_step_card(existing[1], job, view, sandbox=sandbox, secret_available=job.secret_available)
                await self._update(record, existing[0], card)
        delay = duration(self.service.settings.propagation_delay.total_seconds())
        if event.kind == EventKind.PROPAGATION_STARTED and not record.reminder_activity_id:
            due = job.step(StepName.SECURED_ACCESS).due_at or datetime.now(timezone.utc)
            posted = await self._post(record, cards.reminder_card(job, due_at=due, in_effect=False, delay_text=delay))
            await self._change(record, lambda r: setattr(r, "reminder_activity_id", r.reminder_activity_id or posted or "posted"))
        elif event.kind == EventKind.REMINDER_DUE and not record.reminded:
            due = job.step(StepName.SECURED_ACCESS).due_at or datetime.now(timezone.utc)
            await self._post(record, cards.reminder_card(job, due_at=due, in_effect=True, delay_text=delay))
            await self._change(record, lambda r: setattr(r, "reminded", True))
        elif event.kind in DAY_TWO:
            await self._day_two(event, job, record)
        elif event.kind == EventKind.JOB_COMPLETED and not record.completed:
            client_id = next((s.outputs.get("client_id", "") for s in job.steps
                              if s.step in (StepName.APP_REGISTRATION, StepName.DELETE_APP_REGISTRATION)), "")
            portal = self.service.settings.sandbox_portal_url
            plan = plan_from_dict((await self.service.load(job.id)).plan)
            card = cards.completion_card(job, entra_url=entra_link(client_id, portal), copilot_url=copilot_link(job.agent.bot_id, portal), plan=plan)
            said = "the setup is done." if job.request.purpose == "setup" else "the change is done."
            await self._post(record, card, mention=record.requester_actor.name or "requester", say=said)
            await self._change(record, lambda r: setattr(r, "completed", True))

    async def _day_two(self, event: Event, job: JobView, record: JobConversation) -> None:
        """A finding of the watch, on the setup's job: a card in its conversation whose buttons plan the change. The card
        id counts before the card is posted, so a quick click is never taken for a stale card."""
        card_id, data, name = new_card_id(), event.data, job.agent.name
        if event.kind == EventKind.SECRET_EXPIRING:
            card = cards.expiry_card(card_id, job.id, agent_name=name, message=event.message, threshold=int(data.get("threshold", 0)),
                                     expires=str(data.get("expires") or ""), client_id=str(data.get("client_id") or ""))
        elif event.kind == EventKind.DRIFT_FOUND:
            card = cards.drift_card(card_id, job.id, agent_name=name, findings=data.get("findings") or [], noticed_at=str(data.get("noticed_at") or ""))
        else:
            card = cards.resolved_card(name)
        await self._change(record, lambda r: setattr(r, "notice_cards", [*r.notice_cards, card_id][-30:]))
        said = event.message[:1].lower() + event.message[1:]
        await self._post(record, card, mention=record.requester_actor.name or "requester", say=said)

    async def _progress(self, record: JobConversation, job: JobView) -> None:
        await self._update(record, record.progress_activity_id, cards.progress_card(record.progress_card_id, job))

    async def _change(self, record: JobConversation, change: Any) -> None:
        """Change the stored record (etag-checked) and the copy this pass holds."""
        change(record)
        await self.conversations.update(record.job_id, change)

    async def _set_guided(self, record: JobConversation, step: str, activity_id: str, card_id: str) -> None:
        await self._change(record, lambda r: r.guided.__setitem__(step, [activity_id, card_id]))

    def _activity(self, record: JobConversation, card: dict[str, Any]) -> tuple[Activity, ConversationReference]:
        reference = ConversationReference().deserialize(record.reference)
        activity: Activity = MessageFactory.attachment(cards.as_attachment(card))
        TurnContext.apply_conversation_reference(activity, reference)
        return activity, reference

    async def _post(self, record: JobConversation, card: dict[str, Any], mention: str | None = None, say: str = "the setup is done.") -> str:
        """`mention`: @mention the requester with `say` (the notification and chat-list preview read it)."""
        activity, reference = self._activity(record, card)
        if mention:
            requester = record.requester_actor
            account = ChannelAccount(id=record.requester_account or requester.id, name=requester.name)
            activity.text = f"<at>{requester.name or 'requester'}</at>, {say}"
            activity.entities = [Mention(mentioned=account, text=f"<at>{requester.name or 'requester'}</at>", type="mention")]
        client = await self.connectors.create(reference.service_url)
        response = await client.conversations.send_to_conversation(reference.conversation.id, activity)
        return str(response.id or "")

    async def _update(self, record: JobConversation, activity_id: str, card: dict[str, Any]) -> None:
        if not activity_id:
            return
        activity, reference = self._activity(record, card)
        activity.id = activity_id
        client = await self.connectors.create(reference.service_url)
        await client.conversations.update_activity(reference.conversation.id, activity_id, activity)
