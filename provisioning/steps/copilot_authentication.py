"""Guided step: Copilot Studio "Authenticate manually". No public API sets it; the person does it with exactly
these values, then Dataverse shows whether it took (authenticationmode 3 and a connectionName).

Done is refused while the credential this job made has not reached the person: a client secret still waiting in
the hand-off, or a federated credential not yet added. Continuing past that is an explicit, audited override."""

from __future__ import annotations

from typing import Any

from ..dataverse import memo
from ..models import CLIENT_SECRET, ROTATE, SETUP, GuidedInstructions, PlannedStep, StepAction, StepName
from .base import COPILOT_STUDIO, Step, StepContext, Verification, copilot_link, entra_link
from .federated_credential import PROVIDER as FEDERATED_PROVIDER

MODES = {0: "Unspecified", 1: "None (no authentication)", 2: "Integrated (authenticate with Microsoft)",
         3: "Manual: Microsoft Entra ID", 4: "Manual: generic OAuth 2"}
SECRET_PROVIDER = "Microsoft Entra ID V2 with client secrets"


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
                               (), ("Dataverse cannot show which client ID it uses",))
        same_app = ctx.request.purpose != SETUP  # a day-two change keeps the app registration and its client ID
        if ctx.request.credential == CLIENT_SECRET:
            what = "the new client secret (the client ID stays)" if same_app else "the new client ID and secret"
        else:
            what = "the federated credential (the client ID stays)" if same_app else "the client ID and the federated credential"
        return PlannedStep(self.name, StepAction.MANUAL, f"You save 'Authenticate manually' in Copilot Studio with {what}",
                           (), (f"Copilot Studio shows now: {MODES.get(mode or 0, mode)}. The bot checks Dataverse after you confirm.",))

    def instructions(self, ctx: StepContext) -> GuidedInstructions:
        client_id = str(ctx.data.get("app_id", ""))
        links = (("Open Copilot Studio", copilot_link(ctx.agent.bot_id, ctx.portal_url) if ctx.portal_url else COPILOT_STUDIO),
                 ("App registration in Entra", entra_link(client_id, ctx.portal_url)))
        if ctx.request.credential != CLIENT_SECRET:
            return GuidedInstructions(
                title="Save the authentication in Copilot Studio",
                steps=(
                    "The federated credential is on the app registration now.",
                    f"In Copilot Studio, on the Authentication page of the agent '{ctx.agent.name}' (where you entered the client ID), "
                    "check the scopes (below).",
                    "Select Save, then come back here and select 'Done, check it'; the bot checks Dataverse.",
                ),
                values=(("Client ID", client_id), ("Scopes", "profile openid"), ("Service provider", FEDERATED_PROVIDER)),
                links=links,
            )
        uris = ", ".join(ctx.request.redirect_uris)
        if ctx.request.purpose == ROTATE:  # the agent authenticates manually already: only the secret changes
            return GuidedInstructions(
                title="Enter the new client secret in Copilot Studio",
                steps=(
                    f"Open Copilot Studio, open the agent '{ctx.agent.name}', then Settings → Security → Authentication.",
                    "Leave everything as it is except the client secret: select 'Show client secret' (only you see it; it stays "
                    "until you select 'I copied it') and paste it over the old one.",
                    "Select Save, then come back here and select 'Done, check it'. The old secret is removed only after the agent is published.",
                ),
                values=(("Client ID", client_id), ("Service provider", SECRET_PROVIDER)),
                links=links,
                secret_handoff=True,
            )
        return GuidedInstructions(
            title="Set authentication in Copilot Studio",
            steps=(
                f"Open Copilot Studio, open the agent '{ctx.agent.name}', then Settings → Security → Authentication.",
                "Choose 'Authenticate manually' and turn on 'Require users to sign in'.",
                f"Service provider: '{SECRET_PROVIDER}'.",
                f"Client ID: {client_id}",
                "Client secret: select 'Show client secret' (only you see it; it stays until you select 'I copied it') and paste it.",
                "Scopes: profile openid",
                f"Check that the Redirect URL shown is one of these: {uris}",
                "Select Save, then come back here and select 'Done, check it'.",
            ),
            values=(("Client ID", client_id), ("Scopes", "profile openid"), ("Service provider", SECRET_PROVIDER), ("Tenant ID", ctx.tenant_id)),
            links=links,
            secret_handoff=True,
        )

    async def verify(self, ctx: StepContext) -> Verification:
        if ctx.request.credential == CLIENT_SECRET and ctx.secret_waiting:
            return Verification(False, "The new client secret has not been handed over yet, so Copilot Studio cannot be using it: "
                                       "select 'Show client secret', paste it in Copilot Studio, select 'I copied it', then Done.")
        if ctx.request.credential != CLIENT_SECRET and not ctx.data.get("federated_credential_id"):
            return Verification(False, "The federated credential has not been added to the app registration yet.")
        ctx.forget("bot")  # the person changed it: read it again (the next steps then use this read)
        bot = await ctx.agent_bot(self.name.value)
        mode, connection = auth_state(bot)
        if mode == 3 and connection:
            return Verification(True, "Dataverse shows manual Microsoft Entra ID authentication with a token-service connection.")
        text = f"Dataverse shows authenticationmode {mode} ({MODES.get(mode or 0, 'unknown')})"
        text += ", and no connectionName yet." if not connection else f", connectionName {connection}."
        return Verification(False, text + " Save the authentication settings in Copilot Studio, then select 'Done, check it' again.")
