"""Starting jobs from an approved plan, and every click on a job's cards: guided steps, the federated credential's
values, retry (with a new approval when the tenant changed), cancel, and the client secret hand-off (shown only to
the requester, only in an invoke answer, and left on their screen until they say they copied it).

Every click is checked on the server: who clicked (requester, approver), on which job, and whether the card is the
current one. Every refusal is audited (bot/refusals.py)."""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Mapping

from botbuilder.core import MessageFactory, TurnContext
from botbuilder.schema import Activity, InvokeResponse

import cards
from cards.actions import CARD, JOB, STEP, Verb
from provisioning import ProvisioningError, ProvisioningService, StalePlanError, ValidationFailed
from provisioning.models import Actor, JobView, SetupRequest, StepName

from . import refusals
from .authz import AccessPolicy, actor_from, tenant_of
from .config import BotSettings
from .conversations import ConversationStore, JobConversation

log = logging.getLogger(__name__)
JOB_VERBS = {Verb.STEP_DONE, Verb.STEP_OVERRIDE, Verb.STEP_SANDBOX, Verb.STEP_KEEP, Verb.JOB_RETRY, Verb.JOB_CANCEL, Verb.SECRET_REVEAL,
             Verb.SECRET_RENEW, Verb.SECRET_COPIED, Verb.FEDERATED_SUBMIT, Verb.RETRY_APPROVE}
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
        is written before the job exists, so no event of the job can come before it. The notifier posts the job's
        progress card (one poster, so an Approve delivered twice cannot post two)."""
        activity = turn_context.activity
        conversation_id = activity.conversation.id
        if await self.conversations.get(job_id) is None:
            reference = TurnContext.get_conversation_reference(activity).serialize()
            await self.conversations.save(JobConversation(
                job_id=job_id, conversation_id=conversation_id, reference=reference, tenant_id=tenant_of(activity) or "",
                requester=requested_by.to_dict(), progress_card_id=new_card_id(), requester_account=requester_account, created_at=time.time()))
        return await self.service.submit_approved(request, plan_hash, requested_by, approved_by, {"conversation": conversation_id}, job_id=job_id)

    def _current(self, record: JobConversation, verb: str, data: Mapping[str, Any]) -> str:
        """The card id a click of `verb` must come from to count."""
        if verb in (Verb.JOB_RETRY, Verb.JOB_CANCEL):
            return record.progress_card_id
        if verb == Verb.RETRY_APPROVE:
            return str(record.retry_plan.get("card", ""))
        step = StepName.COPILOT_AUTHENTICATION.value if verb in (Verb.SECRET_REVEAL, Verb.SECRET_COPIED) else str(data.get(STEP) or "")
        return (record.guided.get(step) or ["", ""])[1]

    async def handle_submit(self, turn_context: TurnContext, data: Mapping[str, Any]) -> None:
        verb, job_id, card_id = str(data.get("action")), str(data.get(JOB) or ""), str(data.get(CARD) or "")
        who = actor_from(turn_context.activity)
        record = await self.conversations.get(job_id) if job_id else None

        async def refuse(heading: str, why: str) -> None:
            await refusals.refuse(self.service, turn_context, who, verb, heading, why, job_id=job_id, card_id=card_id)

        if record is None:
            await refuse("Nothing was changed", "That card does not belong to a setup I know.")
            return
        if verb in (Verb.SECRET_REVEAL, Verb.SECRET_COPIED):
            await refuse("The secret was not shown", "Your Teams client could not show it privately, and I never post secrets to a conversation. "
                                                     "Use Teams on the desktop or the web, then select 'Show client secret' again.")
            return
        job = await self.service.get_job(job_id)
        if verb == Verb.RETRY_APPROVE:
            allowed = self.policy.may_approve(who.id, requested_by=job.requested_by.id)
            why = self.policy.approval_refusal(who.id, requested_by=job.requested_by.id)
        else:
            allowed = self.policy.may_operate(who.id, requested_by=job.requested_by.id, approved_by=job.approved_by.id)
            why = (f"Only {job.requested_by.name or 'the requester'}, {job.approved_by.name or 'the approver'} or a configured approver "
                   "can act on this setup.")
        if not allowed:
            await refuse("You can't do that", why)
            return
        if not card_id or card_id != self._current(record, verb, data):
            await refuse("Nothing was changed", "That card is out of date; use the newest card for this setup.")
            return
        try:
            await self._act(turn_context, verb, job, record, who, data)
        except ValidationFailed as exc:
            await self._show_field_errors(turn_context, job, record, data, exc)
        except StalePlanError as exc:
            await refuse("Nothing was changed", exc.user_message() + " Select Retry on the progress card to see the new plan.")
        except (ProvisioningError, ValueError) as exc:
            message = exc.user_message() if isinstance(exc, ProvisioningError) else "That step name is not one I know."
            await refuse("That did not work", message)

    async def _act(self, turn_context: TurnContext, verb: str, job: JobView, record: JobConversation, who: Actor, data: Mapping[str, Any]) -> None:
        if verb == Verb.JOB_RETRY:
            outcome = await self.service.retry(job.id, who)
            if outcome.plan is not None:
                await self._ask_to_approve_again(turn_context, job, record, outcome.plan)
        elif verb == Verb.RETRY_APPROVE:
            await self.service.retry_approved(job.id, str(data.get("plan_hash") or ""), who)
            await self._close_retry_plan(turn_context, record, who)
        elif verb == Verb.SECRET_RENEW:
            await self.service.renew_secret(job.id, who)
        elif verb == Verb.JOB_CANCEL:
            await self.service.cancel(job.id, who)
        elif verb == Verb.FEDERATED_SUBMIT:
            await self.service.federated_values(job.id, who, issuer=str(data.get("issuer") or ""), subject=str(data.get("subject") or ""))
        else:
            step = StepName(str(data.get(STEP)))
            if verb == Verb.STEP_SANDBOX:
                await self.service.perform_in_sandbox(job.id, step, who)
            else:
                await self.service.confirm_step(job.id, step, who, override=verb == Verb.STEP_OVERRIDE, keep_previous=verb == Verb.STEP_KEEP)

    async def _show_field_errors(self, turn_context: TurnContext, job: JobView, record: JobConversation, data: Mapping[str, Any],
                                 exc: ValidationFailed) -> None:
        """Put the card back with the values kept and each message under its field."""
        step = StepName(str(data.get(STEP)))
        activity_id, card_id = record.guided.get(step.value) or ["", ""]
        card = cards.guided_step_card(card_id, job, job.step(step), sandbox=self.service.sandbox_available, secret_available=job.secret_available,
                                      values={k: str(data.get(k) or "") for k in ("issuer", "subject")}, errors=exc.by_field())
        activity = MessageFactory.attachment(cards.as_attachment(card))
        activity.id = activity_id or turn_context.activity.reply_to_id
        await turn_context.update_activity(activity)

    async def _ask_to_approve_again(self, turn_context: TurnContext, job: JobView, record: JobConversation, plan: Any) -> None:
        card_id = new_card_id()
        await self.conversations.update(job.id, lambda r: setattr(r, "retry_plan", {"card": card_id, "hash": plan.hash}))
        card = cards.plan_card(card_id, plan, requested_by=job.requested_by, approvers=self.policy.approvers_text(job.requested_by),
                               open_access=self.policy.open_access, retry_of=job.id)
        sent = await turn_context.send_activity(MessageFactory.attachment(cards.as_attachment(card)))
        await self.conversations.update(job.id, lambda r: r.retry_plan.__setitem__("activity", sent.id if sent else ""))

    async def _close_retry_plan(self, turn_context: TurnContext, record: JobConversation, who: Actor) -> None:
        plan_activity = str(record.retry_plan.get("activity") or turn_context.activity.reply_to_id or "")
        await self.conversations.update(record.job_id, lambda r: setattr(r, "retry_plan", {}))
        if plan_activity:
            notice = cards.notice_card("Approved: the setup runs again", f"Approved by {who.name or who.id}.", style="good")
            activity = MessageFactory.attachment(cards.as_attachment(notice))
            activity.id = plan_activity
            await turn_context.update_activity(activity)

    # ---- invokes: the client secret, shown to the requester alone -------------------------------------------------

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
            return InvokeResponse(status=200, body={"task": {"type": "message", "value": "Closed."}})
        verb = data.get("action")
        if verb not in (Verb.SECRET_REVEAL, Verb.SECRET_COPIED, Verb.STEP_SANDBOX):
            return card_invoke(cards.notice_card("Nothing was changed", "Use the buttons on the setup's cards."))
        card = await self._secret_flow(turn_context, str(verb), str(data.get(JOB) or ""), str(data.get(CARD) or ""))
        if activity.name == "task/fetch":
            return InvokeResponse(status=200, body={"task": {"type": "continue", "value": {
                "title": "Client secret", "width": "medium", "height": "medium", "card": cards.as_attachment(card).serialize()}}})
        return card_invoke(card)

    async def _secret_flow(self, turn_context: TurnContext, verb: str, job_id: str, card_id: str) -> dict[str, Any]:
        who = actor_from(turn_context.activity)
        record = await self.conversations.get(job_id) if job_id else None

        async def refused(why: str) -> dict[str, Any]:
            await refusals.record(self.service, who, verb, why, job_id=job_id, card_id=card_id,
                                  conversation=turn_context.activity.conversation.id if turn_context.activity.conversation else "")
            return cards.secret_refused_card(why, heading_text="Nothing was changed" if verb != Verb.SECRET_REVEAL else "The client secret can't be shown")

        if record is None:
            return await refused("That card does not belong to a setup I know.")
        if card_id != (record.guided.get(StepName.COPILOT_AUTHENTICATION.value) or ["", ""])[1]:
            return await refused("That card is out of date; use the newest card for this setup.")
        try:
            if verb == Verb.SECRET_REVEAL:
                secret = await self.service.reveal_secret(job_id, who)
                card = cards.secret_card(card_id, await self.service.get_job(job_id), secret.text, client_id=secret.client_id,
                                         expires=secret.secret_expires, handoff_ends=secret.handoff_ends, sandbox=self.service.sandbox_available)
                del secret
                return card
            if verb == Verb.SECRET_COPIED:
                job = await self.service.secret_copied(job_id, who)
            else:
                job = await self.service.perform_in_sandbox(job_id, StepName.COPILOT_AUTHENTICATION, who)
        except ProvisioningError as exc:
            return await refused(exc.user_message())
        view = job.step(StepName.COPILOT_AUTHENTICATION)
        return cards.guided_step_card(card_id, job, view, sandbox=self.service.sandbox_available, secret_available=job.secret_available)
