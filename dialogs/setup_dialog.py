"""The `/setup copilot` waterfall: choose the agent, fill in the details, review the plan, approve.

Every answer comes from an Adaptive Card (channels only deliver @mentions, so free text would never
arrive). Each card carries a random id; only a click on the current card, by someone allowed to click it,
moves the dialog on. Everything else gets a short notice that says why nothing happened.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from botbuilder.core import MessageFactory, TurnContext
from botbuilder.dialogs import (
    ComponentDialog,
    DialogTurnResult,
    PromptOptions,
    PromptValidatorContext,
    TextPrompt,
    WaterfallDialog,
    WaterfallStepContext,
)

import cards
from bot import refusals
from bot.authz import AccessPolicy, actor_from
from bot.job_actions import JobActions
from cards.actions import Verb
from provisioning import (
    PreflightFailed,
    ProvisioningError,
    ProvisioningService,
    StalePlanError,
    ValidationFailed,
)
from provisioning.models import (
    CREDENTIAL_KINDS,
    DEFAULT_REDIRECT_URIS,
    Actor,
    AgentRef,
    AgentSummary,
    SetupRequest,
    plan_from_dict,
)

log = logging.getLogger(__name__)
CARD_PROMPT = "card-prompt"
WATERFALL = "setup-waterfall"
TOGGLES = ("implicit_grant_access_tokens", "implicit_grant_id_tokens", "require_secured_access", "connect_customer_service", "create_service_principal")


def _card_id() -> str:
    return uuid.uuid4().hex


def job_id_for(conversation_id: str, card_id: str, plan_hash: str) -> str:
    """The job an approval of this plan card starts: the same for a click Teams delivers twice."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"copilot-setup-bot:{conversation_id}:{card_id}:{plan_hash}"))


async def _notice(context: TurnContext, heading: str, message: str, style: str = "warning") -> None:
    await context.send_activity(MessageFactory.attachment(cards.as_attachment(cards.notice_card(heading, message, style=style))))


async def _send(context: TurnContext, card: dict[str, Any]) -> str:
    sent = await context.send_activity(MessageFactory.attachment(cards.as_attachment(card)))
    return sent.id if sent else ""


async def _replace(context: TurnContext, activity_id: str, card: dict[str, Any]) -> None:
    if not activity_id:
        await _send(context, card)
        return
    activity = MessageFactory.attachment(cards.as_attachment(card))
    activity.id = activity_id
    try:
        await context.update_activity(activity)
    except Exception:  # noqa: BLE001 - if the old card cannot be updated, show the new state as a new message
        log.info("could not update card %s; posting a new one", activity_id)
        await _send(context, card)


def default_values(agent: AgentSummary) -> dict[str, Any]:
    return {
        "app_display_name": f"{agent.name} - Copilot auth"[:120],
        "sign_in_audience": "AzureADMultipleOrgs",
        "credential": "federated",
        "secret_lifetime_days": "180",
        "redirect_uris": "\n".join(DEFAULT_REDIRECT_URIS),
        "implicit_grant_access_tokens": "true",
        "implicit_grant_id_tokens": "true",
        "require_secured_access": "true",
        "connect_customer_service": "true" if len(agent.name) <= 30 else "false",
        "create_service_principal": "false",
    }


def request_from(agent: AgentSummary, values: dict[str, Any]) -> tuple[SetupRequest | None, dict[str, str]]:
    """The request the form describes, or per-field messages for what cannot even be read."""
    errors: dict[str, str] = {}
    raw_days = str(values.get("secret_lifetime_days", "")).strip()
    days = int(raw_days) if raw_days.isdigit() else 0
    if not raw_days.isdigit():
        errors["secret_lifetime_days"] = "Choose a lifetime from the list."
    uris = tuple(u.strip() for u in str(values.get("redirect_uris", "")).replace(",", "\n").splitlines() if u.strip())
    flags = {}
    for field in TOGGLES:
        raw = str(values.get(field, "false")).lower()
        if raw not in ("true", "false"):
            errors[field] = "Turn this on or off."
        flags[field] = raw == "true"
    credential = str(values.get("credential") or "federated")
    if credential not in CREDENTIAL_KINDS:
        errors["credential"] = "Choose a federated credential or a client secret."
    if errors:
        return None, errors
    return SetupRequest(
        agent=AgentRef(agent.environment_url, schema_name=agent.schema_name, bot_id=agent.bot_id),
        app_display_name=str(values.get("app_display_name", "")).strip(), sign_in_audience=str(values.get("sign_in_audience", "")),
        redirect_uris=uris, secret_lifetime_days=days, credential=credential,
        implicit_grant_access_tokens=flags["implicit_grant_access_tokens"], implicit_grant_id_tokens=flags["implicit_grant_id_tokens"],
        create_service_principal=flags["create_service_principal"], require_secured_access=flags["require_secured_access"],
        connect_customer_service=flags["connect_customer_service"],
    ), {}


class SetupDialog(ComponentDialog):  # type: ignore[misc]
    def __init__(self, *, service: ProvisioningService, policy: AccessPolicy, job_actions: JobActions) -> None:
        super().__init__(SetupDialog.__name__)
        self.service = service
        self.policy = policy
        self.job_actions = job_actions
        self.add_dialog(TextPrompt(CARD_PROMPT, self._card_validator))
        self.add_dialog(WaterfallDialog(WATERFALL, [self.agent_step, self.details_step, self.plan_step, self.approval_step]))
        self.initial_dialog_id = WATERFALL

    async def _prompt(self, step: WaterfallStepContext, card_id: str, verbs: list[str], who: str) -> DialogTurnResult:
        step.values["card"] = card_id
        return await step.prompt(CARD_PROMPT, PromptOptions(validations={
            "card": card_id, "verbs": verbs, "who": who, "requester": step.values["requester"]["id"]}))

    async def _card_validator(self, prompt: PromptValidatorContext) -> bool:
        context = prompt.context
        expected: dict[str, Any] = prompt.options.validations or {}
        value = context.activity.value
        if not isinstance(value, dict) or "action" not in value:
            await _notice(context, "Use the card", "Answer with the card's inputs and buttons, or type cancel to stop.", "default")
            return False
        who = actor_from(context.activity)
        action, card = str(value.get("action")), str(value.get("card") or "")
        if value.get("card") != expected.get("card") or value.get("action") not in expected.get("verbs", []):
            await refusals.refuse(self.service, context, who, action, "Nothing was changed",
                                  "That card is out of date; use the newest card, or type /setup copilot to start again.", card_id=card)
            return False
        if expected.get("who") == "approver" and value.get("action") == Verb.PLAN_APPROVE:
            if not self.policy.may_approve(who.id, requested_by=str(expected.get("requester"))):
                await refusals.refuse(self.service, context, who, action, "You can't approve this plan",
                                      self.policy.approval_refusal(who.id, requested_by=str(expected.get("requester"))), card_id=card)
                return False
        elif who.id != expected.get("requester") and not (
            expected.get("who") == "approver" and self.policy.may_approve(who.id, requested_by=str(expected.get("requester")))
        ):
            await refusals.refuse(self.service, context, who, action, "This setup is someone else's",
                                  "Only the person who started it can answer these cards. Type /setup copilot to start your own.", card_id=card)
            return False
        prompt.recognized.value = value
        return True

    # ---- the waterfall ----------------------------------------------------------------------------------------

    async def agent_step(self, step: WaterfallStepContext) -> DialogTurnResult:
        options: dict[str, Any] = dict(step.options or {})
        activity = step.context.activity
        if "requester" not in options:
            who = actor_from(activity)
            if not who.id:
                await _notice(step.context, "I can't tell who you are", "Your message has no Microsoft Entra user id, so I can't check what you may do.")
                return await step.end_dialog()
            if not self.policy.may_request(who.id):
                await refusals.refuse(self.service, step.context, who, "setup.request", "You can't start a setup",
                                      "Only the people listed in SETUP_REQUESTERS can start one. Ask your Teams administrator.")
                return await step.end_dialog()
            options["requester"] = who.to_dict()
            options["requester_account"] = activity.from_property.id if activity.from_property else ""
        step.values.update({k: options[k] for k in ("requester", "requester_account")})
        if options.get("agent"):
            step.values["agent"] = options["agent"]
            return await step.next({"action": "__reuse__", "options": options})
        try:
            agents = await self.service.list_agents()
        except ProvisioningError as exc:
            await _notice(step.context, "I could not list the agents", exc.user_message(), "error")
            return await step.end_dialog()
        card_id = _card_id()  # the list itself is not kept in the dialog's state: the choice is looked up again below
        step.values["card_activity"] = await _send(step.context, cards.agent_choice_card(card_id, agents, error=options.get("agent_error")))
        if not agents:
            return await step.end_dialog()
        return await self._prompt(step, card_id, [Verb.FORM_SUBMIT, Verb.FORM_CANCEL], "requester")

    async def details_step(self, step: WaterfallStepContext) -> DialogTurnResult:
        result: dict[str, Any] = step.result
        options: dict[str, Any] = result.get("options", {}) if result.get("action") == "__reuse__" else {}
        if result.get("action") == Verb.FORM_CANCEL:
            await _notice(step.context, "Cancelled", "Nothing was changed.", "default")
            return await step.end_dialog()
        if options:
            agent = AgentSummary(**options["agent"])
            values = options.get("values") or default_values(agent)
            errors = options.get("errors") or {}
        else:
            chosen = str(result.get("agent", ""))
            try:  # the agent list is cached (AGENT_LIST_MAX_AGE), so this is the list the card showed, or a newer one
                match = [a for a in await self.service.list_agents() if cards.agent_value(a) == chosen]
            except ProvisioningError as exc:
                await _notice(step.context, "I could not list the agents", exc.user_message(), "error")
                return await step.end_dialog()
            if not match:
                return await step.replace_dialog(WATERFALL, {**self._keep(step), "agent_error": "Choose one of the agents in the list."})
            agent = match[0]
            values, errors = default_values(agent), {}
        step.values["agent"] = agent.to_dict()
        card_id = _card_id()
        step.values["card_activity"] = await _send(step.context, cards.details_card(card_id, agent, values, errors))
        return await self._prompt(step, card_id, [Verb.FORM_SUBMIT, Verb.FORM_CANCEL], "requester")

    def _keep(self, step: WaterfallStepContext) -> dict[str, Any]:
        return {"requester": step.values["requester"], "requester_account": step.values.get("requester_account", "")}

    async def plan_step(self, step: WaterfallStepContext) -> DialogTurnResult:
        result: dict[str, Any] = step.result
        if result.get("action") == Verb.FORM_CANCEL:
            await _notice(step.context, "Cancelled", "Nothing was changed.", "default")
            return await step.end_dialog()
        agent = AgentSummary(**step.values["agent"])
        values = {k: result.get(k, "") for k in default_values(agent)}
        request, errors = request_from(agent, values)
        if request is not None:
            try:
                plan = await self.service.plan(request)
            except ValidationFailed as exc:
                errors = exc.by_field()
            except PreflightFailed as exc:
                lines = [f"{c.message} To fix: {c.remedy}" for c in exc.report.checks if not c.ok]
                await _notice(step.context, "The bot's provisioning identity can't do this yet", " ".join(lines), "error")
                return await step.end_dialog()
            except ProvisioningError as exc:
                await _notice(step.context, "I could not make a plan", exc.user_message(), "error")
                return await step.end_dialog()
        if errors:
            return await step.replace_dialog(WATERFALL, {**self._keep(step), "agent": agent.to_dict(), "values": values, "errors": errors})
        conversation = step.context.activity.conversation
        if self.policy.settings.require_second_approver and getattr(conversation, "conversation_type", "personal") in (None, "personal"):
            await _notice(step.context, "A second approver is needed",
                          "Setups need a second person to approve them, and nobody else can see this personal chat. "
                          "Start the setup in a team channel or group chat where an approver can see the plan: @mention me with setup copilot.")
            return await step.end_dialog()
        requester = Actor.from_dict(step.values["requester"])
        card_id = _card_id()
        step.values["plan"] = plan.to_dict()
        step.values["card_activity"] = await _send(step.context, cards.plan_card(
            card_id, plan, requested_by=requester, approvers=self.policy.approvers_text(requester), open_access=self.policy.open_access))
        return await self._prompt(step, card_id, [Verb.PLAN_APPROVE, Verb.PLAN_CANCEL], "approver")

    async def approval_step(self, step: WaterfallStepContext) -> DialogTurnResult:
        result: dict[str, Any] = step.result
        plan = plan_from_dict(step.values["plan"])
        requester = Actor.from_dict(step.values["requester"])
        who = actor_from(step.context.activity)
        approvers = self.policy.approvers_text(requester)
        card_id = step.values["card"]
        if result.get("action") == Verb.PLAN_CANCEL:
            await _replace(step.context, step.values["card_activity"], cards.plan_card(
                card_id, plan, requested_by=requester, approvers=approvers, open_access=self.policy.open_access, state="cancelled", note=f"Cancelled by {who.name or who.id}."))
            return await step.end_dialog()
        if result.get("plan_hash") != plan.hash:
            await _notice(step.context, "Nothing was changed", "That approval does not match the plan shown.")
            return await step.end_dialog()
        try:
            await self.job_actions.start_job(step.context, plan.request, plan.hash, requested_by=requester, approved_by=who,
                                             job_id=job_id_for(step.context.activity.conversation.id, card_id, plan.hash),
                                             requester_account=step.values.get("requester_account", ""))
        except StalePlanError as exc:
            await _replace(step.context, step.values["card_activity"], cards.plan_card(
                card_id, plan, requested_by=requester, approvers=approvers, open_access=self.policy.open_access, state="stale", note=exc.user_message() + " Type /setup copilot to see the new plan."))
            return await step.end_dialog()
        except ProvisioningError as exc:
            await _notice(step.context, "The setup did not start", exc.user_message(), "error")
            return await step.end_dialog()
        await _replace(step.context, step.values["card_activity"], cards.plan_card(
            card_id, plan, requested_by=requester, approvers=approvers, open_access=self.policy.open_access, state="approved", note=f"Approved by {who.name or who.id}."))
        return await step.end_dialog()
