"""Day two in Teams: the buttons on expiry, drift and status cards, `remove copilot`, and the approval of the
plans they lead to. A change is planned by the service, shown as a plan card, and approved as a setup is (the same
approvers, the same second-approver rule); its job then runs with its own progress card, like a setup's.

Every click is checked on the server: who clicked, and that the card is one the bot issued for that setup."""

from __future__ import annotations

import logging
from typing import Any, Mapping

from botbuilder.core import MessageFactory, TurnContext

import cards
from cards.actions import CARD, CHECK, JOB, KEEP, Verb
from provisioning import ProvisioningError, ProvisioningService, StalePlanError
from provisioning.models import Actor, Plan, plan_from_dict
from provisioning.setups import REMOVE_SETUP, SetupView

from . import refusals
from .authz import AccessPolicy, actor_from
from .conversations import ConversationStore, JobConversation
from .job_actions import JobActions, new_card_id

log = logging.getLogger(__name__)
CHANGE_VERBS = {Verb.CHANGE_PLAN, Verb.CHANGE_APPROVE, Verb.CHANGE_CANCEL}
KEEP_CARDS = 30  # the newest day-two cards of a setup whose buttons count


class DayTwoActions:
    def __init__(self, *, service: ProvisioningService, conversations: ConversationStore, policy: AccessPolicy, job_actions: JobActions) -> None:
        self.service = service
        self.conversations = conversations
        self.policy = policy
        self.job_actions = job_actions

    def handles(self, data: Mapping[str, Any]) -> bool:
        return isinstance(data, Mapping) and data.get("action") in CHANGE_VERBS

    async def issue(self, job_id: str, card_id: str) -> bool:
        """Make `card_id` a card whose buttons count for the setup of `job_id`; False if that setup has no Teams record."""
        return await self.conversations.update(job_id, lambda r: setattr(r, "notice_cards", [*r.notice_cards, card_id][-KEEP_CARDS:])) is not None

    # ---- typed commands ---------------------------------------------------------------------------------------------

    async def status(self, turn_context: TurnContext) -> None:
        who = actor_from(turn_context.activity)
        conversation = turn_context.activity.conversation.id
        everyone = bool(who.id) and who.id in self.policy.settings.setup_approvers
        try:
            jobs = await self.service.list_jobs(tag=("conversation", conversation))
            setups = await self.service.setups(None if everyone else conversation)
        except ProvisioningError as exc:
            await self._say(turn_context, cards.notice_card("I could not read the setups", exc.user_message(), style="error"))
            return
        card_id = new_card_id()
        for setup in setups:
            await self.issue(setup.job_id, card_id)
        letters = {}
        for job in jobs[-10:]:
            record = await self.conversations.get(job.id)
            if record is not None and record.dead_letters:
                letters[job.id] = record.dead_letters
        await self._say(turn_context, cards.status_card(jobs, letters, setups=setups, card_id=card_id, everyone=everyone))

    async def remove_command(self, turn_context: TurnContext) -> None:
        who = actor_from(turn_context.activity)
        everyone = bool(who.id) and who.id in self.policy.settings.setup_approvers
        setups = [s for s in await self.service.setups(None if everyone else turn_context.activity.conversation.id) if s.status == "active"]
        if not setups:
            await self._say(turn_context, cards.notice_card("Nothing to remove here", "No agent was set up from this conversation. "
                                                            "Type status to see the setups."))
            return
        card_id = new_card_id()
        for setup in setups:
            await self.issue(setup.job_id, card_id)
        if len(setups) == 1:
            await self._plan(turn_context, who, setups[0], REMOVE_SETUP)
        else:
            await self._say(turn_context, cards.choose_removal_card(card_id, setups))

    # ---- card clicks ------------------------------------------------------------------------------------------------

    async def handle_submit(self, turn_context: TurnContext, data: Mapping[str, Any]) -> None:
        verb, job_id, card_id = str(data.get("action")), str(data.get(JOB) or ""), str(data.get(CARD) or "")
        who = actor_from(turn_context.activity)
        record = await self.conversations.get(job_id) if job_id else None

        async def refuse(heading: str, why: str) -> None:
            await refusals.refuse(self.service, turn_context, who, verb, heading, why, job_id=job_id or None, card_id=card_id)

        if record is None:
            await refuse("Nothing was changed", "That card does not belong to a setup I know in Teams. A setup made from the command line "
                                                "is changed there: python -m provisioning rotate|remove.")
            return
        issued = card_id in record.notice_cards if verb == Verb.CHANGE_PLAN else card_id in record.proposals
        if not card_id or not issued:
            await refuse("Nothing was changed", "That card is out of date; type status for the current one.")
            return
        try:
            setup = await self._setup_of(job_id)
            if verb == Verb.CHANGE_PLAN:
                await self._change(turn_context, who, record, setup, str(data.get("change") or ""), refuse)
            elif verb == Verb.CHANGE_APPROVE:
                await self._approve(turn_context, who, record, card_id, str(data.get("plan_hash") or ""), refuse)
            else:
                await self._cancel(turn_context, who, record, card_id, refuse)
        except StalePlanError as exc:
            await self._close(record, card_id, "stale", exc.user_message() + " Use the card's button again to see the new plan.", turn_context)
        except ProvisioningError as exc:
            await refuse("That did not work", exc.user_message())

    async def _setup_of(self, job_id: str) -> SetupView:
        for setup in await self.service.setups():
            if setup.job_id == job_id:
                return setup
        raise ProvisioningError("That setup has changed since this card was made.", action="Type status for the current card.")

    async def _change(self, turn_context: TurnContext, who: Actor, record: JobConversation, setup: SetupView, change: str, refuse: Any) -> None:
        setup_job = await self.service.get_job(setup.job_id)
        operates = self.policy.may_operate(who.id, requested_by=setup_job.requested_by.id, approved_by=setup_job.approved_by.id)
        if change == CHECK:
            if not operates:
                await refuse("You can't do that", "Only the people who set this agent up, or an approver, can check it.")
                return
            checked = await self.service.check_setup(setup.subject)
            await self._say(turn_context, cards.notice_card(f"Checked '{checked.agent_name}'", checked.last_result,
                                                            style="good" if checked.healthy else "warning"))
        elif change == KEEP:
            if not (who.id and (who.id in self.policy.settings.setup_approvers or (not self.policy.settings.setup_approvers and operates))):
                await refuse("You can't do that", "Keeping a change records it as approved: only an approver (SETUP_APPROVERS) can.")
                return
            kept = await self.service.keep_change(setup.subject, who)
            await self._say(turn_context, cards.notice_card("Kept as approved", f"The setup of '{kept.agent_name}' is recorded as it is now, "
                                                            f"by {who.name or who.id}. I no longer report these changes.", style="good"))
        else:
            if not (self.policy.may_request(who.id) and (operates or not self.policy.settings.setup_approvers)):
                await refuse("You can't do that", "Only the people who set this agent up, or an approver, can change its setup.")
                return
            await self._plan(turn_context, who, setup, change)

    async def _plan(self, turn_context: TurnContext, who: Actor, setup: SetupView, change: str) -> None:
        plan = await self.service.propose(setup.subject, change)
        card_id = new_card_id()
        proposal = {"plan": plan.to_dict(), "requester": who.to_dict(), "activity": "",
                    "account": getattr(turn_context.activity.from_property, "id", "") or ""}
        await self.conversations.update(setup.job_id, lambda r: r.proposals.__setitem__(card_id, proposal))
        sent = await turn_context.send_activity(MessageFactory.attachment(cards.as_attachment(self._plan_card(card_id, plan, who, setup.job_id))))
        await self.conversations.update(setup.job_id, lambda r: r.proposals.get(card_id, {}).__setitem__("activity", sent.id if sent else ""))

    def _plan_card(self, card_id: str, plan: Plan, requester: Actor, job_id: str, state: str = "pending", note: str | None = None) -> dict[str, Any]:
        return cards.plan_card(card_id, plan, requested_by=requester, approvers=self.policy.approvers_text(requester),
                               open_access=self.policy.open_access, change_of=job_id, state=state, note=note)

    async def _approve(self, turn_context: TurnContext, who: Actor, record: JobConversation, card_id: str, plan_hash: str, refuse: Any) -> None:
        from dialogs.setup_dialog import job_id_for  # the same idempotent job id a setup's approval gets

        proposal = record.proposals[card_id]
        requester = Actor.from_dict(proposal["requester"])
        if not self.policy.may_approve(who.id, requested_by=requester.id):
            await refuse("You can't approve this plan", self.policy.approval_refusal(who.id, requested_by=requester.id))
            return
        plan = plan_from_dict(proposal["plan"])
        if plan_hash != plan.hash:
            await refuse("Nothing was changed", "That card is out of date; type status for the current one.")
            return
        conversation = turn_context.activity.conversation.id
        await self.job_actions.start_job(turn_context, plan.request, plan.hash, requested_by=requester, approved_by=who,
                                         job_id=job_id_for(conversation, card_id, plan.hash), requester_account=str(proposal.get("account") or ""))
        await self._close(record, card_id, "approved", f"Approved by {who.name or who.id}.", turn_context)

    async def _cancel(self, turn_context: TurnContext, who: Actor, record: JobConversation, card_id: str, refuse: Any) -> None:
        requester = Actor.from_dict(record.proposals[card_id]["requester"])
        if who.id != requester.id and who.id not in self.policy.settings.setup_approvers:
            await refuse("You can't do that", f"Only {requester.name or 'the person who asked for it'} or an approver can cancel this plan.")
            return
        await self._close(record, card_id, "cancelled", f"Cancelled by {who.name or who.id}.", turn_context)

    async def _close(self, record: JobConversation, card_id: str, state: str, note: str, turn_context: TurnContext) -> None:
        """The plan card shows how it ended, for everyone; its buttons stop counting."""
        proposal = record.proposals.get(card_id) or {}
        def drop(r: JobConversation) -> None:
            r.proposals.pop(card_id, None)

        await self.conversations.update(record.job_id, drop)
        if not proposal:
            return
        card = self._plan_card(card_id, plan_from_dict(proposal["plan"]), Actor.from_dict(proposal["requester"]), record.job_id, state=state, note=note)
        activity = MessageFactory.attachment(cards.as_attachment(card))
        activity.id = str(proposal.get("activity") or turn_context.activity.reply_to_id or "")
        if activity.id:
            await turn_context.update_activity(activity)

    @staticmethod
    async def _say(turn_context: TurnContext, card: dict[str, Any]) -> None:
        await turn_context.send_activity(MessageFactory.attachment(cards.as_attachment(card)))
