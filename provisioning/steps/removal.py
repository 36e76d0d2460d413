"""Removing a setup: the Copilot Studio side Microsoft offers no API for (guided, verified through Dataverse), then
the app registration this bot made — identified by its uniqueName and its owners — with its credentials."""

from __future__ import annotations

from typing import Any

from ..models import GuidedInstructions, PlannedStep, SetupRequest, StepAction, StepName
from .app_registration import AppRegistration
from .base import COPILOT_STUDIO, Step, StepContext, Verification, copilot_link
from .copilot_authentication import MODES, auth_state
from .customer_service_connection import registration_app_id


class AgentAuthenticationOff(Step):
    name = StepName.AGENT_AUTHENTICATION_OFF
    guided = True

    async def read(self, ctx: StepContext) -> dict[str, Any]:
        return {"bot": await ctx.agent_bot(self.name.value)}

    def decide(self, ctx: StepContext, current: dict[str, Any]) -> PlannedStep:
        mode, _connection = auth_state(current["bot"])
        if mode != 3:
            return PlannedStep(self.name, StepAction.NO_CHANGE, f"The agent no longer authenticates manually ({MODES.get(mode or 0, mode)})")
        return PlannedStep(self.name, StepAction.MANUAL, "You switch the agent's authentication off, or to another provider, in Copilot Studio",
                           notes=("then the app registration can go without breaking sign-in",))

    def instructions(self, ctx: StepContext) -> GuidedInstructions:
        return GuidedInstructions(
            title="Stop using this app registration in Copilot Studio",
            steps=(f"Open Copilot Studio, open the agent '{ctx.agent.name}', then Settings → Security → Authentication.",
                   "Choose 'No authentication', 'Authenticate with Microsoft', or another provider, and select Save.",
                   "Publish the agent, then come back here and select 'Done, check it'; the bot checks Dataverse before it deletes anything."),
            links=(("Open Copilot Studio", copilot_link(ctx.agent.bot_id, ctx.portal_url) if ctx.portal_url else COPILOT_STUDIO),),
        )

    async def verify(self, ctx: StepContext) -> Verification:
        ctx.forget("bot")
        mode, _connection = auth_state(await ctx.agent_bot(self.name.value))
        if mode != 3:
            return Verification(True, f"Dataverse shows the agent's authentication as {MODES.get(mode or 0, mode)}.")
        return Verification(False, "Dataverse still shows manual Microsoft Entra ID authentication. Switch it in Copilot Studio, then "
                                   "select 'Done, check it' again (or Continue anyway if the agent now uses another app registration).")


class CustomerServiceDisconnect(Step):
    name = StepName.CUSTOMER_SERVICE_DISCONNECT
    guided = True

    def applies(self, request: SetupRequest) -> bool:
        return request.connect_customer_service

    async def read(self, ctx: StepContext) -> dict[str, Any]:
        bot = await ctx.agent_bot(self.name.value)
        app_id = registration_app_id(bot)
        user = await ctx.dataverse.find_bot_application_user(app_id, step=self.name.value) if app_id else None
        return {"user": user}

    def decide(self, ctx: StepContext, current: dict[str, Any]) -> PlannedStep:
        if not current["user"]:
            return PlannedStep(self.name, StepAction.NO_CHANGE, "The agent is not connected to Customer Service")
        return PlannedStep(self.name, StepAction.MANUAL, "You disconnect the agent from Dynamics 365 Customer Service")

    def instructions(self, ctx: StepContext) -> GuidedInstructions:
        return GuidedInstructions(
            title="Disconnect the agent from Dynamics 365 Customer Service",
            steps=(f"In Copilot Studio, open the agent '{ctx.agent.name}', then Channels → Customer engagement hub → Dynamics 365 Customer Service.",
                   "Select Disconnect, and remove the agent from its workstream in the Customer Service admin center.",
                   "Come back here and select 'Done, check it'; the bot checks Dataverse for the agent's bot application user."),
            links=(("Open Copilot Studio", copilot_link(ctx.agent.bot_id, ctx.portal_url) if ctx.portal_url else COPILOT_STUDIO),),
        )

    async def verify(self, ctx: StepContext) -> Verification:
        ctx.forget("bot")
        if (await self.read(ctx))["user"]:
            return Verification(False, "Dataverse still has the agent's bot application user. Disconnect it, then select 'Done, check it' again.")
        return Verification(True, "Dataverse has no bot application user for the agent any more.")


class DeleteAppRegistration(Step):
    """Deletes only the app registration with this setup's uniqueName that the provisioning identity owns."""

    name = StepName.DELETE_APP_REGISTRATION

    async def read(self, ctx: StepContext) -> dict[str, Any]:
        app = await ctx.application(self.name.value)
        if app is not None:
            await AppRegistration().check_ours(ctx, app)
        return {"app": app}

    def decide(self, ctx: StepContext, current: dict[str, Any]) -> PlannedStep:
        app = current["app"]
        if app is None:
            return PlannedStep(self.name, StepAction.NO_CHANGE, "The app registration is gone already")
        kinds = [k for k, present in (("client secrets", app.get("passwordCredentials")), ) if present]
        return PlannedStep(self.name, StepAction.DELETE, f"Delete the app registration '{app.get('displayName')}' (client ID {app.get('appId')})",
                           notes=(f"with its credentials{' (' + ', '.join(kinds) + ')' if kinds else ''}; Entra keeps it in Deleted "
                                  "applications for 30 days",))

    async def act(self, ctx: StepContext, current: dict[str, Any]) -> dict[str, str]:
        app = current["app"]
        await ctx.graph.delete_application(str(app["id"]), step=self.name.value)
        ctx.forget("app")
        return {"client_id": str(app.get("appId", "")), "object_id": str(app.get("id", ""))}

    async def verify(self, ctx: StepContext) -> Verification:
        ctx.forget("app")
        if await ctx.application(self.name.value) is not None:
            return Verification(False, "Microsoft Entra still shows the app registration.")
        return Verification(True, "Microsoft Entra no longer shows the app registration.")

    def outputs(self, ctx: StepContext, current: dict[str, Any]) -> dict[str, str]:
        return {}
