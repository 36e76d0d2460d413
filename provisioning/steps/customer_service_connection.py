"""Guided step: connect the agent to Dynamics 365 Customer Service. The "Connect" button has no API; the
job verifies the Omnichannel bot application user that connecting creates."""

from __future__ import annotations

from typing import Any

from ..dataverse import memo
from ..models import ROTATE, AgentSummary, GuidedInstructions, PlannedStep, SetupRequest, StepAction, StepName
from ..validation import CUSTOMER_SERVICE_MAX_NAME
from .base import COPILOT_STUDIO, Step, StepContext, Verification, copilot_link


def registration_app_id(bot: dict[str, Any]) -> str:
    state = memo(bot.get("synchronizationstatus")).get("currentSynchronizationState") or {}
    return str((state.get("botRegistration") or {}).get("applicationId") or "")


class CustomerServiceConnection(Step):
    name = StepName.CUSTOMER_SERVICE_CONNECTION
    guided = True

    def applies(self, request: SetupRequest) -> bool:
        return request.connect_customer_service and request.purpose != ROTATE

    def skip_reason(self, request: SetupRequest, agent: AgentSummary) -> str:
        if request.purpose == ROTATE:
            return "not part of a rotation"
        if len(agent.name) > CUSTOMER_SERVICE_MAX_NAME:
            return f"the agent's name is over {CUSTOMER_SERVICE_MAX_NAME} characters, which Customer Service cannot connect"
        return "not requested"

    async def read(self, ctx: StepContext) -> dict[str, Any]:
        bot = await ctx.agent_bot(self.name.value)
        app_id = registration_app_id(bot)
        user = None
        if app_id:
            user = await ctx.cached(f"bot_user:{app_id}", lambda: ctx.dataverse.find_bot_application_user(app_id, step=self.name.value))
        return {"user": user, "registration": app_id}

    def decide(self, ctx: StepContext, current: dict[str, Any]) -> PlannedStep:
        if current["user"]:
            return PlannedStep(self.name, StepAction.NO_CHANGE, "The agent is already connected to Customer Service",
                               (), (f"bot application user '{current['user'].get('fullname')}'",))
        return PlannedStep(self.name, StepAction.MANUAL, "You connect the agent to Dynamics 365 Customer Service",
                           (), ("the bot then checks Dataverse for the agent's Omnichannel bot application user",))

    def instructions(self, ctx: StepContext) -> GuidedInstructions:
        return GuidedInstructions(
            title="Connect the agent to Dynamics 365 Customer Service",
            steps=(
                f"In Copilot Studio, open the agent '{ctx.agent.name}', then Channels → Customer engagement hub → Dynamics 365 Customer Service.",
                "Select Connect, and wait until it says the agent is connected.",
                "Then add the agent to a push-based workstream in the Customer Service admin center (one agent per workstream).",
                "Come back here and select 'Done, check it'; the bot checks Dataverse for the agent's bot application user.",
            ),
            links=(("Open Copilot Studio", copilot_link(ctx.agent.bot_id, ctx.portal_url) if ctx.portal_url else COPILOT_STUDIO),),
        )

    async def verify(self, ctx: StepContext) -> Verification:
        ctx.forget("bot", "bot_user:")  # the operator just connected it: read both again
        current = await self.read(ctx)
        if current["user"]:
            return Verification(True, f"Dataverse has the agent's bot application user '{current['user'].get('fullname')}'.")
        return Verification(False, f"Dataverse has no bot application user for the agent (application id {current['registration'] or 'unknown'}). "
                                   "Select Connect in Copilot Studio and wait for it to finish, then select 'Done, check it' again.")

    def outputs(self, ctx: StepContext, current: dict[str, Any]) -> dict[str, str]:
        return {"bot_application_user": str((current["user"] or {}).get("systemuserid", ""))}
