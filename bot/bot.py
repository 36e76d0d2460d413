"""The Teams activity handler: refuses other tenants, routes commands, card clicks and invokes, runs the setup
dialog, and saves conversation state at the end of every turn."""

from __future__ import annotations

import logging
from typing import Any

from botbuilder.core import ConversationState, MessageFactory, TurnContext, UserState
from botbuilder.core.teams import TeamsActivityHandler
from botbuilder.dialogs import Dialog, DialogSet, DialogTurnStatus
from botbuilder.schema import ChannelAccount, InvokeResponse

import cards
from cards.actions import Verb
from provisioning import ProvisioningError, ProvisioningService

from . import refusals
from .authz import AccessPolicy, actor_from, tenant_of
from .commands import Command, message_text, parse
from .day_two import DayTwoActions
from .job_actions import JobActions, card_invoke, new_card_id

log = logging.getLogger(__name__)
DIALOG_VERBS = {Verb.FORM_SUBMIT, Verb.FORM_CANCEL, Verb.PLAN_APPROVE, Verb.PLAN_CANCEL}


class SetupBot(TeamsActivityHandler):  # type: ignore[misc]
    def __init__(self, *, conversation_state: ConversationState, user_state: UserState, service: ProvisioningService,
                 policy: AccessPolicy, job_actions: JobActions, dialog: Dialog, day_two: DayTwoActions | None = None) -> None:
        super().__init__()
        if conversation_state is None or dialog is None:
            raise TypeError("[SetupBot]: Missing parameter. conversation_state and dialog are required")
        self.conversation_state = conversation_state
        self.user_state = user_state
        self.service = service
        self.policy = policy
        self.job_actions = job_actions
        self.day_two = day_two or DayTwoActions(service=service, conversations=job_actions.conversations, policy=policy, job_actions=job_actions)
        self.dialog = dialog
        self.dialog_state = conversation_state.create_property("DialogState")
        self.dialog_owner = conversation_state.create_property("SetupOwner")  # who started the setup questions here

    async def on_turn(self, turn_context: TurnContext) -> None:
        if not self.policy.tenant_allowed(tenant_of(turn_context.activity)):
            log.info("refused an activity from tenant %s", tenant_of(turn_context.activity))
            if turn_context.activity.type == "message":
                await self._say(turn_context, cards.notice_card("Not available", "This bot is not enabled for your organization.", style="error"))
            elif turn_context.activity.type == "invoke":
                await turn_context.send_activity({"type": "invokeResponse", "value": InvokeResponse(
                    status=200, body={"statusCode": 200, "type": "application/vnd.microsoft.card.adaptive",
                                      "value": cards.notice_card("Not available", "This bot is not enabled for your organization.")})})
            return
        try:
            await super().on_turn(turn_context)
        finally:
            await self.conversation_state.save_changes(turn_context)
            await self.user_state.save_changes(turn_context)

    async def _say(self, turn_context: TurnContext, card: dict[str, Any]) -> None:
        await turn_context.send_activity(MessageFactory.attachment(cards.as_attachment(card)))

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        value = turn_context.activity.value
        if isinstance(value, dict) and "action" in value:
            action = value.get("action")
            if self.job_actions.handles(value):
                await self.job_actions.handle_submit(turn_context, value)
                return
            if self.day_two.handles(value):
                await self.day_two.handle_submit(turn_context, value)
                return
            if action == Verb.START_SETUP:
                await self._start(turn_context)
                return
            if action == Verb.SHOW_STATUS:
                await self._status(turn_context)
                return
            if action in DIALOG_VERBS:
                if not await self._continue(turn_context):
                    await self._say(turn_context, cards.notice_card("Nothing was changed", "That card is no longer active. Type /setup copilot to start again."))
                return
        command = parse(message_text(turn_context.activity))
        if command == Command.SETUP:
            await self._start(turn_context)
        elif command == Command.STATUS:
            await self._status(turn_context)
        elif command == Command.REMOVE:
            await self.day_two.remove_command(turn_context)
        elif command == Command.CANCEL:
            dc = await self._dialog_context(turn_context)
            if dc.active_dialog is not None:
                if not await self._may_end_others(turn_context, "setup.cancel"):
                    return
                await dc.cancel_all_dialogs()
                await self._say(turn_context, cards.notice_card("Cancelled", "I stopped the setup questions. Nothing was changed."))
            else:
                await self._say(turn_context, cards.notice_card("Nothing to cancel", "No setup questions are in progress here. "
                                                              "To stop a running setup, use Cancel setup on its progress card."))
        elif command == Command.HELP:
            await self._say(turn_context, cards.help_card(new_card_id(), bot_name=_bot_name(turn_context)))
        elif not await self._continue(turn_context):
            text = message_text(turn_context.activity)
            await self._say(turn_context, cards.help_card(new_card_id(), note=f"I did not understand '{text[:60]}'." if text else None,
                                                          bot_name=_bot_name(turn_context)))

    async def _dialog_context(self, turn_context: TurnContext) -> Any:
        dialogs = DialogSet(self.dialog_state)
        dialogs.add(self.dialog)
        return await dialogs.create_context(turn_context)

    async def _continue(self, turn_context: TurnContext) -> bool:
        dc = await self._dialog_context(turn_context)
        if dc.active_dialog is None:
            return False
        await dc.continue_dialog()
        return True

    async def _may_end_others(self, turn_context: TurnContext, action: str) -> bool:
        """In a group chat or channel, only the person who started the setup questions, or an approver, may end them
        (by cancelling, or by starting a new setup over them). Everyone else gets a notice, and the refusal is audited."""
        conversation = turn_context.activity.conversation
        if getattr(conversation, "conversation_type", None) in (None, "personal") or not getattr(conversation, "is_group", True):
            return True
        who = actor_from(turn_context.activity)
        owner = await self.dialog_owner.get(turn_context, dict)
        if not owner or who.id == owner.get("id") or (who.id and who.id in self.policy.settings.setup_approvers):
            return True
        await refusals.refuse(self.service, turn_context, who, action, "This setup is someone else's",
                              f"{owner.get('name') or 'Someone'} is setting up an agent here. Only they or an approver can stop it; "
                              "to set up another agent, start it in a new thread or a chat with me.")
        return False

    async def _start(self, turn_context: TurnContext) -> None:
        dc = await self._dialog_context(turn_context)
        if dc.active_dialog is not None:
            if not await self._may_end_others(turn_context, "setup.replace"):
                return
            await dc.cancel_all_dialogs()
            await self._say(turn_context, cards.notice_card("Starting over", "The setup questions in progress here were cancelled."))
        await self.dialog_owner.set(turn_context, actor_from(turn_context.activity).to_dict())
        result = await dc.begin_dialog(self.dialog.id)
        if result.status == DialogTurnStatus.Empty:
            log.warning("setup dialog did not start")

    async def _status(self, turn_context: TurnContext) -> None:
        await self.day_two.status(turn_context)

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        if turn_context.activity.name in ("adaptiveCard/action", "task/fetch", "task/submit"):
            try:
                return await self.job_actions.handle_invoke(turn_context)
            except ProvisioningError as exc:
                return card_invoke(cards.notice_card("That did not work", exc.user_message(), style="error"))
        response: InvokeResponse = await super().on_invoke_activity(turn_context)
        if response is not None and response.status == 501:
            # botbuilder answers invokes nobody handles with 501; for Teams that is the sender's mistake, not a server error
            return InvokeResponse(status=400, body={"error": f"This bot does not handle '{turn_context.activity.name or ''}' invokes."})
        return response

    async def on_teams_members_added_dispatch(self, members_added: list[ChannelAccount], team_info: Any, turn_context: TurnContext) -> None:
        """Only the bot's own arrival matters (the welcome card), so members are taken as the activity names them:
        no roster lookup at the Bot Connector for each person added to a team."""
        await self.on_members_added_activity(members_added, turn_context)

    async def on_members_added_activity(self, members_added: list[ChannelAccount], turn_context: TurnContext) -> None:
        """Welcome once, when the bot itself is added. (Teams also sends installationUpdate for the same install;
        answering both would welcome twice.)"""
        bot_id = turn_context.activity.recipient.id if turn_context.activity.recipient else None
        if any(m.id == bot_id for m in members_added):
            await self._say(turn_context, cards.welcome_card(new_card_id(), bot_name=_bot_name(turn_context)))


def _bot_name(turn_context: TurnContext) -> str:
    """The bot's name as this conversation shows it (what people type after @)."""
    recipient = turn_context.activity.recipient
    return (recipient.name if recipient and recipient.name else "") or "Copilot Setup"
