"""The federated identity credential (Copilot Studio's "Microsoft Entra ID V2 with federated credentials"): no secret.

Copilot Studio shows a federated credential issuer and value (subject) for the agent once the person has chosen that
service provider and entered the client and tenant id; no API reads them, so the person copies both into the card.
The job then upserts the credential by a deterministic name (a re-run never adds a second one) with the audience
api://AzureADTokenExchange and reads it back. The values are taken as Copilot Studio shows them, never parsed.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from ..errors import FieldError, ProvisioningError
from ..models import (
    FEDERATED,
    TOKEN_EXCHANGE_AUDIENCE,
    AgentSummary,
    Change,
    GuidedInstructions,
    PlannedStep,
    SetupRequest,
    StepAction,
    StepName,
)
from .base import COPILOT_STUDIO, Step, StepContext, Verification, copilot_link, parse_time

MAX_ISSUER = MAX_SUBJECT = 600  # Graph's documented limits
PROVIDER = "Microsoft Entra ID V2 with federated credentials"


def credential_name(agent: AgentSummary) -> str:
    """URL-friendly, unique per agent, well under Graph's 120 characters."""
    return f"copilot-studio-{agent.bot_id.lower()}"


def field_errors(issuer: str, subject: str) -> list[FieldError]:
    """What is wrong with the two values, each next to its field (nothing is guessed about their format)."""
    errors = []
    parts = urlsplit(issuer)
    if not issuer:
        errors.append(FieldError("issuer", "Paste the federated credential issuer that Copilot Studio shows."))
    elif " " in issuer or parts.scheme != "https" or not parts.netloc:
        errors.append(FieldError("issuer", "The issuer must be an https URL with no spaces: copy it again from Copilot Studio."))
    elif len(issuer) > MAX_ISSUER:
        errors.append(FieldError("issuer", f"Microsoft Entra accepts at most {MAX_ISSUER} characters here (this has {len(issuer)})."))
    if not subject:
        errors.append(FieldError("subject", "Paste the federated credential value that Copilot Studio shows."))
    elif any(c.isspace() for c in subject):
        errors.append(FieldError("subject", "The value has no spaces; copy it again from Copilot Studio (the copy button avoids stray spaces)."))
    elif len(subject) > MAX_SUBJECT:
        errors.append(FieldError("subject", f"Microsoft Entra accepts at most {MAX_SUBJECT} characters here (this has {len(subject)})."))
    return errors


class FederatedCredential(Step):
    name = StepName.FEDERATED_CREDENTIAL
    guided = True  # the person supplies the two values; the job then makes the credential itself

    def applies(self, request: SetupRequest) -> bool:
        return request.credential == FEDERATED

    def skip_reason(self, request: SetupRequest, agent: AgentSummary) -> str:
        return "a client secret is used instead"

    async def read(self, ctx: StepContext) -> dict[str, Any]:
        app = await ctx.application(self.name.value)
        if app is None:
            return {"credential": None}
        found = await ctx.cached(f"fic:{app['id']}", lambda: ctx.graph.federated_credential(str(app["id"]), credential_name(ctx.agent), step=self.name.value))
        return {"credential": found}

    def decide(self, ctx: StepContext, current: dict[str, Any]) -> PlannedStep:
        name, have = credential_name(ctx.agent), current["credential"]
        wanted = ctx.data.get("federated_values")
        if have and (not wanted or (have.get("issuer"), have.get("subject")) == (wanted["issuer"], wanted["subject"])) \
                and str(have.get("id")) not in ctx.request.retire:
            return PlannedStep(self.name, StepAction.NO_CHANGE, f"The federated credential '{name}' exists",
                               (), (f"issuer {have.get('issuer')}", f"value {have.get('subject')}"))
        return PlannedStep(self.name, StepAction.CREATE,
                           "You copy the issuer and value Copilot Studio shows; the bot adds them as a federated credential",
                           (Change("federatedIdentityCredential.name", None, name),
                            Change("federatedIdentityCredential.audiences", None, [TOKEN_EXCHANGE_AUDIENCE])),
                           ("no secret is made, stored or rotated",))

    def ready(self, ctx: StepContext) -> bool:
        """The person has given the values: the job can make the credential."""
        return bool(ctx.data.get("federated_values"))

    async def act(self, ctx: StepContext, current: dict[str, Any]) -> dict[str, str]:
        values = ctx.data["federated_values"]
        object_id = str(ctx.data["app_object_id"])
        name = credential_name(ctx.agent)
        body = {"name": name, "issuer": values["issuer"], "subject": values["subject"], "audiences": [TOKEN_EXCHANGE_AUDIENCE],
                "description": f"Copilot Studio agent '{ctx.agent.name}' ({ctx.agent.schema_name}), set up by Copilot Setup Bot"}
        created = await ctx.graph.upsert_federated_credential(object_id, name, body, created_at=parse_time(ctx.data.get("app_created_at")),
                                                              step=self.name.value, on_retry=ctx.on_retry)
        if created:
            await ctx.remember(federated_created_by_job=True)
        ctx.forget("fic:")
        return {"name": name, "issuer": values["issuer"], "subject": values["subject"]}

    async def verify(self, ctx: StepContext) -> Verification:
        """Read it back. A new credential can be missing from reads while it replicates, so look again a few times."""
        values = ctx.data["federated_values"]
        object_id = str(ctx.data["app_object_id"])
        wanted = (values["issuer"], values["subject"], [TOKEN_EXCHANGE_AUDIENCE])
        budget, delay = ctx.settings.replication_settle.total_seconds(), 0.25
        while True:
            found = [c for c in await ctx.graph.federated_credentials(object_id, created_at=parse_time(ctx.data.get("app_created_at")), step=self.name.value)
                     if c.get("name") == credential_name(ctx.agent)]
            if found and (found[0].get("issuer"), found[0].get("subject"), found[0].get("audiences")) == wanted:
                await ctx.remember(federated_credential_id=found[0].get("id"))
                return Verification(True, "Microsoft Entra shows the federated credential with the issuer and value from Copilot Studio.")
            if found:
                raise ProvisioningError("The federated credential Microsoft Entra shows differs from what was entered.",
                                        action="Retry; if it persists, check the app registration's federated credentials.", step=self.name.value)
            if budget <= 0:
                return Verification(False, "Microsoft Entra does not show the new federated credential yet; Retry in a minute.")
            await ctx.beat()
            await (ctx.sleep or asyncio.sleep)(min(delay, budget))
            budget -= delay
            delay = min(delay * 2, 8.0)

    def outputs(self, ctx: StepContext, current: dict[str, Any]) -> dict[str, str]:
        have = current["credential"] or {}
        return {"name": str(have.get("name", "")), "issuer": str(have.get("issuer", "")), "subject": str(have.get("subject", ""))}

    async def adopt(self, ctx: StepContext, current: dict[str, Any]) -> None:
        have = current["credential"] or {}
        if have.get("id"):
            await ctx.remember(federated_credential_id=have["id"])

    def instructions(self, ctx: StepContext) -> GuidedInstructions:
        client_id = str(ctx.data.get("app_id", ""))
        return GuidedInstructions(
            title="Federated credential: copy two values from Copilot Studio",
            steps=(
                f"Open Copilot Studio, open the agent '{ctx.agent.name}', then Settings → Security → Authentication.",
                "Choose 'Authenticate manually' and turn on 'Require users to sign in'.",
                f"Service provider: '{PROVIDER}'.",
                f"Client ID: {client_id}",
                f"Tenant ID: {ctx.tenant_id}",
                "Copilot Studio now shows a 'Federated credential issuer' and a 'Federated credential value'. Copy both into "
                "the fields below and select 'Add the federated credential'. Don't select Save in Copilot Studio yet.",
            ),
            values=(("Client ID", client_id), ("Tenant ID", ctx.tenant_id), ("Service provider", PROVIDER)),
            links=(("Open Copilot Studio", copilot_link(ctx.agent.bot_id, ctx.portal_url) if ctx.portal_url else COPILOT_STUDIO),),
            inputs=(("issuer", "Federated credential issuer", "https://…, as Copilot Studio shows it"),
                    ("subject", "Federated credential value", "as Copilot Studio shows it")),
        )
