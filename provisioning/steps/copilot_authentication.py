"""Guided step: Copilot Studio "Authenticate manually". No public API sets it; the operator does it with
exactly these values, then Dataverse shows whether it took (authenticationmode 3 and a connectionName)."""

from __future__ import annotations

from typing import Any

from ..dataverse import memo
from ..models import GuidedInstructions, PlannedStep, StepAction, StepName
from .base import COPILOT_STUDIO, Step, StepContext, Verification, entra_link

MODES = {0: "Unspecified", 1: "None (no authentication)", 2: "Integrated (authenticate with Microsoft)",
         3: "Manual: Microsoft Entra ID", 4: "Manual: generic OAuth 2"}


def auth_state(bot: dict[str, Any]) -> tuple[int | None, str]:
    mode = bot.get("authenticationmode")
    connection = str(memo(bot.get("authenticationconfiguration")).get("connectionName") or "")
    return mode, connection


class CopilotAuthentication(Step):
    name = StepName.COPILOT_AUTHENTICATION
    guided = True

    async def read(self, ctx: StepContext) -> dict[str, Any]:
        return {"bot": await ctx.agent_bot(self.name.value)}

    def decide(self, ctx: StepContext, current: dict[str, Any]) -> PlannedStep:
        mode, connection = auth_state(current["bot"])
        if mode == 3 and connection and not ctx.data.get("needs_new_auth"):
            return PlannedStep(self.name, StepAction.NO_CHANGE, "The agent already authenticates manually with Microsoft Entra ID",
                               (), ("Dataverse cannot show which client ID it uses; re-run with a new secret to change it",))
        return PlannedStep(self.name, StepAction.MANUAL, "You set 'Authenticate manually' in Copilot Studio with the new client ID and secret",
                           (), (f"now: {MODES.get(mode or 0, mode)}; the bot checks Dataverse after you confirm",))

    def instructions(self, ctx: StepContext) -> GuidedInstructions:
        client_id = str(ctx.data.get("app_id", ""))
        uris = ", ".join(ctx.request.redirect_uris)
        return GuidedInstructions(
            title="Set authentication in Copilot Studio",
            steps=(
                f"Open Copilot Studio, open the agent '{ctx.agent.name}', then Settings → Security → Authentication.",
                "Choose 'Authenticate manually' and turn on 'Require users to sign in'.",
                "Service provider: 'Microsoft Entra ID V2 with client secrets'.",
                f"Client ID: {client_id}",
                "Client secret: use 'Show client secret' (shown once, only to you) and paste it.",
                "Scopes: profile openid",
                f"Check that the Redirect URL shown is one of: {uris}.",
                "Select Save, then come back here and select Done.",
            ),
            values=(("Client ID", client_id), ("Scopes", "profile openid"),
                    ("Service provider", "Microsoft Entra ID V2 with client secrets"), ("Tenant ID", ctx.tenant_id)),
            links=(("Open Copilot Studio", COPILOT_STUDIO), ("App registration in Entra", entra_link(client_id))),
            secret_handoff=True,
        )

    async def verify(self, ctx: StepContext) -> Verification:
        ctx.forget("bot")  # the operator changed it: read it again (the next steps then use this read)
        bot = await ctx.agent_bot(self.name.value)
        mode, connection = auth_state(bot)
        if mode == 3 and connection:
            return Verification(True, "Dataverse shows manual Microsoft Entra ID authentication with a token-service connection.")
        text = f"Dataverse shows authenticationmode {mode} ({MODES.get(mode or 0, 'unknown')})"
        text += ", and no connectionName yet." if not connection else f", connectionName {connection}."
        return Verification(False, text + " Save the authentication settings in Copilot Studio, then select Done again.")
