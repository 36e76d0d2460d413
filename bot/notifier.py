"""The one way provisioning events reach Teams: it reads the journal's events after a durable cursor and
updates the job's progress card in place (once per batch), posts and updates the guided-step cards, the
propagation reminder (when secured access is confirmed and again when the window has passed) and the
completion card. Posts go through the stored conversation reference, so they work after a restart.
The cursor advances only after a batch was delivered."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from botbuilder.core import MessageFactory, Storage, TurnContext
from botbuilder.schema import Activity, ChannelAccount, ConversationReference, Mention

import cards
from provisioning import ProvisioningService
from provisioning.models import Event, EventKind, JobView, StepName, StepStatus
from provisioning.steps.base import COPILOT_STUDIO, entra_link

from .adapter import SetupAdapter
from .conversations import ConversationStore, JobConversation
from .errors import BotError
from .job_actions import new_card_id

log = logging.getLogger(__name__)
CURSOR_KEY = "notifier/cursor"
GUIDED = {StepName.COPILOT_AUTHENTICATION, StepName.SECURED_ACCESS, StepName.CUSTOMER_SERVICE_CONNECTION}


def delay_text(seconds: float) -> str:
    if seconds >= 3600:
        hours = seconds / 3600
        return f"{hours:g} hour{'s' if hours != 1 else ''}"
    if seconds >= 60:
        minutes = seconds / 60
        return f"{minutes:g} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"


class Notifier:
    def __init__(self, *, adapter: SetupAdapter, app_id: str, service: ProvisioningService, conversations: ConversationStore,
                 storage: Storage) -> None:
        self.adapter = adapter
        self.app_id = app_id
        self.service = service
        self.conversations = conversations
        self.storage = storage
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="notifier")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    @property
    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _cursor(self) -> int:
        doc = (await self.storage.read([CURSOR_KEY])).get(CURSOR_KEY)
        return int(doc.get("seq", 0)) if isinstance(doc, dict) else 0

    async def _save_cursor(self, seq: int) -> None:
        await self.storage.write({CURSOR_KEY: {"seq": seq, "e_tag": "*"}})

    async def _run(self) -> None:
        cursor = await self._cursor()
        failures = 0
        while True:
            try:
                events = await self.service.wait_for_events(cursor, 1.0)
                if events:
                    await self.deliver(events)
                    cursor = events[-1].seq
                    await self._save_cursor(cursor)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep the cursor; try the same batch again after a pause
                failures += 1
                delay = min(30.0, 0.5 * 2 ** failures) * random.uniform(0.5, 1.0)
                why = str(exc) if isinstance(exc, BotError) else type(exc).__name__  # the bot's own errors carry no secrets
                log.warning("could not deliver events after %d (%s); retrying in %.1f s", cursor, why, delay)
                await asyncio.sleep(delay)

    async def deliver(self, events: list[Event]) -> None:
        refresh: set[str] = set()
        for event in events:
            record = await self.conversations.get(event.job_id)
            if record is None:
                continue  # a job started from the command line: nothing to show in Teams
            job = await self.service.get_job(event.job_id)
            await self._special(event, job, record)
            refresh.add(event.job_id)
        for job_id in refresh:
            record = await self.conversations.get(job_id)  # read again: the turn that started the job may have posted its card since
            if record is not None:
                job = await self.service.get_job(job_id)
                await self._update(record, record.progress_activity_id, cards.progress_card(record.progress_card_id, job))

    async def _special(self, event: Event, job: JobView, record: JobConversation) -> None:
        """Cards for one event. Every change to the record is a read-modify-write with an etag (the turn that
        started the job writes it too). A post is recorded right after it is made; a crash between the two makes
        the post happen again after restart (at least once: Teams offers no way to ask whether it arrived)."""
        step = event.step
        sandbox = self.service.sandbox_available
        if step in GUIDED and event.kind in (EventKind.WAITING_FOR_OPERATOR, EventKind.VERIFICATION_FAILED, EventKind.STEP_SUCCEEDED,
                                             EventKind.STEP_OVERRIDDEN, EventKind.PROPAGATION_STARTED, EventKind.REMINDER_DUE,
                                             EventKind.SECRET_TAKEN):
            assert step is not None
            view = job.step(step)
            existing = record.guided.get(step.value)
            if event.kind == EventKind.WAITING_FOR_OPERATOR and view.status == StepStatus.WAITING_FOR_OPERATOR:
                card_id = new_card_id()
                card = cards.guided_step_card(card_id, job, view, sandbox=sandbox, secret_available=job.secret_available)
                if existing and existing[0]:  # the new card id first, so a click on the updated card is never taken for a stale one
                    await self._set_guided(record, step.value, existing[0], card_id)
                    await self._update(record, existing[0], card)
                else:  # the card id is saved before the card is posted, so a quick click is never taken for a stale one
                    await self._set_guided(record, step.value, "", card_id)
                    await self._set_guided(record, step.value, await self._post(record, card), card_id)
            elif existing and existing[0]:
                card = cards.guided_step_card(existing[1], job, view, sandbox=sandbox, secret_available=job.secret_available)
                await self._update(record, existing[0], card)
        delay = delay_text(self.service.settings.propagation_delay.total_seconds())
        if event.kind == EventKind.PROPAGATION_STARTED and not record.reminder_activity_id:
            due = job.step(StepName.SECURED_ACCESS).due_at or datetime.now(timezone.utc)
            posted = await self._post(record, cards.reminder_card(job, due_at=due, in_effect=False, delay_text=delay))
            await self._change(record, lambda r: setattr(r, "reminder_activity_id", r.reminder_activity_id or posted or "posted"))
        elif event.kind == EventKind.REMINDER_DUE and not record.reminded:
            due = job.step(StepName.SECURED_ACCESS).due_at or datetime.now(timezone.utc)
            await self._post(record, cards.reminder_card(job, due_at=due, in_effect=True, delay_text=delay))
            await self._change(record, lambda r: setattr(r, "reminded", True))
        elif event.kind == EventKind.JOB_COMPLETED and not record.completed:
            client_id = job.step(StepName.APP_REGISTRATION).outputs.get("client_id", "")
            card = cards.completion_card(job, entra_url=entra_link(client_id), copilot_url=COPILOT_STUDIO)
            await self._post(record, card, mention=record.requester_actor.name or "requester")
            await self._change(record, lambda r: setattr(r, "completed", True))

    async def _change(self, record: JobConversation, change: Callable[[JobConversation], None]) -> None:
        """Change the stored record (etag-checked) and the copy this batch holds."""
        change(record)
        await self.conversations.update(record.job_id, change)

    async def _set_guided(self, record: JobConversation, step: str, activity_id: str, card_id: str) -> None:
        await self._change(record, lambda r: r.guided.__setitem__(step, [activity_id, card_id]))

    async def _continue(self, record: JobConversation, callback: Callable[[TurnContext], Awaitable[None]]) -> None:
        """A turn in the job's conversation. The connector tries a throttled or failing post again itself; what
        still fails ends this batch, which `_run` delivers again after a pause (the cursor has not moved)."""
        reference = ConversationReference().deserialize(record.reference)
        await self.adapter.continue_conversation(reference, callback, self.app_id)

    async def _post(self, record: JobConversation, card: dict[str, Any], mention: str | None = None) -> str:
        sent: list[str] = []

        async def callback(context: TurnContext) -> None:
            activity = MessageFactory.attachment(cards.as_attachment(card))
            if mention:
                requester = record.requester_actor
                account = ChannelAccount(id=record.requester_account or requester.id, name=requester.name)
                activity.text = f"<at>{requester.name or 'requester'}</at>, the setup is done."
                activity.entities = [Mention(mentioned=account, text=f"<at>{requester.name or 'requester'}</at>", type="mention")]
            response = await context.send_activity(activity)
            sent.append(response.id if response else "")

        await self._continue(record, callback)
        return sent[0] if sent else ""

    async def _update(self, record: JobConversation, activity_id: str, card: dict[str, Any]) -> None:
        if not activity_id:
            return

        async def callback(context: TurnContext) -> None:
            activity: Activity = MessageFactory.attachment(cards.as_attachment(card))
            activity.id = activity_id
            await context.update_activity(activity)

        await self._continue(record, callback)
