"""Starting jobs from an approved plan, and every click on a job's cards: guided steps, retry, cancel, and
the one-time client secret hand-off (shown only to the requester, only in an invoke response)."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Mapping

from botbuilder.core import MessageFactory, TurnContext
from botbuilder.schema import Activity, InvokeResponse

import cards
from cards.actions import CARD, JOB, STEP, Verb
from provisioning import ProvisioningError, ProvisioningService
from provisioning.models import Actor, JobView, SetupRequest, StepName

from .authz import AccessPolicy, actor_from, tenant_of
from .config import BotSettings
from .conversations import ConversationStore, JobConversation

log = logging.getLogger(__name__)
JOB_VERBS = {Verb.STEP_DONE, Verb.STEP_OVERRIDE, Verb.STEP_SANDBOX, Verb.JOB_RETRY, Verb.JOB_CANCEL, Verb.SECRET_REVEAL, Verb.SECRET_RENEW}
CARD_RESPONSE = "application/vnd.microsoft.card.adaptive"


def new_card_id() -> str:
    return uuid.uuid4().hex


def card_invoke(card: dict[str, Any]) -> InvokeResponse:
    return InvokeResponse(status=200, body={"statusCode": 200, "type": CARD_RESPONSE, "value": card})


class JobActions:
    def __init__(self, *, service: ProvisioningService, conversations: ConversationStore, policy: AccessPolicy,
                 bot_settings: BotSettings) -> None:
        self.service = service
        self.conversations = conversations
        self.policy = policy
        self.settings = bot_settings

    def handles(self, data: Mapping[str, Any]) -> bool:
        return isinstance(data, Mapping) and data.get("action") in JOB_VERBS

    async def start_job(self, turn_context: TurnContext, request: SetupRequest, plan_hash: str, *, requested_by: Actor,
                        approved_by: Actor, job_id: str, requester_account: str = "") -> JobView:
        """Start the approved job, idempotently: `job_id` is derived from the plan card, so an Approve that Teams
        delivers again (the bot died mid-turn) finds the same job instead of making a second one. The Teams record
        is written before the job exists, so no event of the job can come before it."""
        activity = turn_context.activity
        conversation_id = activity.conversation.id
        if await self.conversations.get(job_id) is None:
            reference = TurnContext.get_conversation_reference(activity).serialize()
            await self.conversations.save(JobConversation(
                job_id=job_id, conversation_id=conversation_id, reference=reference, tenant_id=tenant_of(activity) or "",
                requester=requested_by.to_dict(), progress_card_id=new_card_id(), requester_account=requester_account))
        job = await self.service.submit_approved(request, plan_hash, requested_by, approved_by, {"conversation": conversation_id}, job_id=job_id)
        record = await self.conversations.get(job_id)
        if record is not None and not record.progress_activity_id:
            card = cards.progress_card(record.progress_card_id, await self.service.get_job(job_id))
            sent = await turn_context.send_activity(MessageFactory.attachment(cards.as_attachment(card)))

            def posted(r: JobConversation) -> None:
                r.progress_activity_id = r.progress_activity_id or (sent.id if sent else "")

            await self.conversations.update(job_id, posted)
        return job

    async def _refuse(self, turn_context: TurnContext, heading: str, why: str) -> None:
        await turn_context.send_activity(MessageFactory.attachment(cards.as_attachment(cards.notice_card(heading, why, style="warning"))))

    async def handle_submit(self, turn_context: TurnContext, data: Mapping[str, Any]) -> None:
        verb, job_id, card_id = data.get("action"), str(data.get(JOB) or ""), str(data.get(CARD) or "")
        who = actor_from(turn_context.activity)
        record = await self.conversations.get(job_id) if job_id else None
        if record is None:
            await self._refuse(turn_context, "Nothing was changed", "That card does not belong to a setup I know.")
            return
        if verb == Verb.SECRET_REVEAL:
            await self._refuse(turn_context, "The secret was not shown",
                               "Your Teams client could not show it privately, and I never post secrets to a conversation. "
                               "Use Teams on the desktop or the web, then select 'Show client secret (once)' again.")
            return
        job = await self.service.get_job(job_id)
        if not self.policy.may_operate(who.id, requested_by=job.requested_by.id, approved_by=job.approved_by.id):
            await self._refuse(turn_context, "You can't do that",
                               f"Only {job.requested_by.name or 'the requester'}, {job.approved_by.name or 'the approver'} or a configured approver can act on this setup.")
            return
        if verb in (Verb.JOB_RETRY, Verb.JOB_CANCEL):
            current = record.progress_card_id
        else:
            current = (record.guided.get(str(data.get(STEP) or "")) or ["", ""])[1]
        if not card_id or card_id != current:
            await self._refuse(turn_context, "Nothing was changed", "That card is out of date; use the newest card for this setup.")
            return
        try:
            if verb == Verb.JOB_RETRY:
                await self.service.retry(job_id, who)
            elif verb == Verb.SECRET_RENEW:
                await self.service.renew_secret(job_id, who)
            elif verb == Verb.JOB_CANCEL:
                await self.service.cancel(job_id, who)
            else:
                step = StepName(str(data.get(STEP)))
                if verb == Verb.STEP_SANDBOX:
                    await self.service.perform_in_sandbox(job_id, step, who)
                else:
                    await self.service.confirm_step(job_id, step, who, override=verb == Verb.STEP_OVERRIDE)
        except (ProvisioningError, ValueError) as exc:
            message = exc.user_message() if isinstance(exc, ProvisioningError) else "That step name is not one I know."
            await self._refuse(turn_context, "That did not work", message)

    async def handle_invoke(self, turn_context: TurnContext) -> InvokeResponse:
        activity: Activity = turn_context.activity
        value = activity.value if isinstance(activity.value, dict) else {}
        if activity.name == "adaptiveCard/action":
            action = value.get("action") or {}
            data = dict(action.get("data") or {})
            data.setdefault("action", action.get("verb"))
        else:  # task/fetch, task/submit
            data = dict(value.get("data") or value)
        if activity.name == "task/submit":
            return InvokeResponse(status=200, body={"task": {"type": "message", "value": "Closed. The secret is not stored any more."}})
        if data.get("action") != Verb.SECRET_REVEAL:
            return card_invoke(cards.notice_card("Nothing was changed", "Use the buttons on the setup's cards."))
        card = await self._secret_card(turn_context, str(data.get(JOB) or ""), str(data.get(CARD) or ""))
        if activity.name == "task/fetch":
            return InvokeResponse(status=200, body={"task": {"type": "continue", "value": {
                "title": "Client secret", "width": "medium", "height": "medium", "card": cards.as_attachment(card).serialize()}}})
        return card_invoke(card)

    async def _secret_card(self, turn_context: TurnContext, job_id: str, card_id: str) -> dict[str, Any]:
        record = await self.conversations.get(job_id) if job_id else None
        if record is None:
            return cards.secret_refused_card("That card does not belong to a setup I know.")
        if card_id != (record.guided.get(StepName.COPILOT_AUTHENTICATION.value) or ["", ""])[1]:
            return cards.secret_refused_card("That card is out of date; use the newest card for this setup.")
        who = actor_from(turn_context.activity)
        try:
            secret = await self.service.take_secret(job_id, who)
        except ProvisioningError as exc:
            return cards.secret_refused_card(exc.user_message())
        job = await self.service.get_job(job_id)
        outputs = job.step(StepName.CLIENT_SECRET).outputs
        card = cards.secret_card(job.step(StepName.APP_REGISTRATION).outputs.get("client_id", ""), secret, outputs.get("secret_expires"))
        del secret
        return card
