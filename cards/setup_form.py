"""The two input cards of the setup dialog: which agent, then the details. Inputs, not free text, so they
work in channels (where the bot only hears @mentions). Errors sit right under their field."""

from __future__ import annotations

import functools
import json
from typing import Any, Mapping, Sequence

import microsoft_teams.cards as ac

from provisioning.models import AgentSummary

from .actions import Verb, action_data
from .common import environment_label, error_line, finish, text, title

AGENT_NAME_LIMIT = 30
LIFETIMES = (("30 days", "30"), ("90 days", "90"), ("180 days (recommended)", "180"), ("1 year", "365"), ("2 years", "730"))
CREDENTIALS = (
    ("Federated credential (recommended by Microsoft: no secret to store or rotate)", "federated"),
    ("Client secret (as in the original procedure)", "client_secret"),
)
AUDIENCES = (("Accounts in any organization (multitenant)", "AzureADMultipleOrgs"), ("Accounts in this organization only (single tenant)", "AzureADMyOrg"))
TOGGLES = (
    ("implicit_grant_access_tokens", "Access tokens (implicit grant)"),
    ("implicit_grant_id_tokens", "ID tokens (implicit grant)"),
    ("require_secured_access", "Require secured access for the web channel (you turn it on; up to 2 hours to take effect)"),
    ("connect_customer_service", "Connect the agent to Dynamics 365 Customer Service"),
    ("create_service_principal", "Also create the app's service principal in this tenant"),
)


def agent_value(agent: AgentSummary) -> str:
    return f"{agent.environment_url}|{agent.bot_id}"


_CARD_ID = "\u0000card-id\u0000"  # stands for the card id in a cached card; no agent name or URL can hold it


def agent_choice_card(card_id: str, agents: Sequence[AgentSummary], *, selected: str | None = None, error: str | None = None) -> dict[str, Any]:
    """The agent choice. Every `/setup copilot` shows it, mostly for the same agents, so it is built once per agent list
    (the card models cost more than the rest of the turn) and copied with this card's id."""
    card: dict[str, Any] = json.loads(_agent_choice_json(tuple(agents), selected, error).replace(json.dumps(_CARD_ID)[1:-1], card_id))
    return card


@functools.lru_cache(maxsize=32)
def _agent_choice_json(agents: tuple[AgentSummary, ...], selected: str | None, error: str | None) -> str:
    return json.dumps(_agent_choice(_CARD_ID, agents, selected=selected, error=error))


def _agent_choice(card_id: str, agents: Sequence[AgentSummary], *, selected: str | None = None, error: str | None = None) -> dict[str, Any]:
    body: list[Any] = [title("Set up an agent: 1 of 2"), text("Which Copilot Studio agent should work in Customer Service?")]
    if not agents:
        body.append(text("I found no agents in the configured environments (DATAVERSE_URL). Check that the provisioning app is an "
                         "application user there, and that the agent exists in Copilot Studio.", color="Warning"))
        return finish(body, [ac.SubmitAction(title="Cancel", data=action_data(Verb.FORM_CANCEL, card_id))])
    choices = []
    for agent in agents:
        label = f"{agent.name} ({environment_label(agent)})"
        if len(agent.name) > AGENT_NAME_LIMIT:
            label += " (name too long for Customer Service)"
        choices.append(ac.Choice(title=label, value=agent_value(agent)))
    body.append(ac.ChoiceSetInput(id="agent", label="Agent", choices=choices, value=selected or choices[0].value,
                                  is_required=True, error_message="Choose an agent.", style="compact"))
    body.extend(error_line(error))
    return finish(body, [
        ac.SubmitAction(title="Next", data=action_data(Verb.FORM_SUBMIT, card_id)),
        ac.SubmitAction(title="Cancel", data=action_data(Verb.FORM_CANCEL, card_id), associated_inputs="none"),
    ])


def details_card(card_id: str, agent: AgentSummary, values: Mapping[str, Any], errors: Mapping[str, str]) -> dict[str, Any]:
    body: list[Any] = [title("Set up an agent: 2 of 2"), text(f"Agent: {agent.name}, in {environment_label(agent)}", subtle=True)]
    body.append(ac.TextInput(id="app_display_name", label="App registration name", value=str(values.get("app_display_name", "")),
                             max_length=120, is_required=True, error_message="Enter a name of at most 120 characters."))
    body.extend(error_line(errors.get("app_display_name")))
    body.append(ac.ChoiceSetInput(id="sign_in_audience", label="Who can sign in", style="expanded",
                                  value=str(values.get("sign_in_audience", "AzureADMultipleOrgs")),
                                  choices=[ac.Choice(title=t, value=v) for t, v in AUDIENCES]))
    body.extend(error_line(errors.get("sign_in_audience")))
    body.append(ac.ChoiceSetInput(id="credential", label="Credential Copilot Studio signs in with", style="expanded",
                                  value=str(values.get("credential", "federated")), choices=[ac.Choice(title=t, value=v) for t, v in CREDENTIALS]))
    body.extend(error_line(errors.get("credential")))
    body.append(ac.ChoiceSetInput(id="secret_lifetime_days", label="Client secret lifetime (only for a client secret)", style="compact",
                                  value=str(values.get("secret_lifetime_days", "180")), choices=[ac.Choice(title=t, value=v) for t, v in LIFETIMES]))
    body.extend(error_line(errors.get("secret_lifetime_days")))
    uris = values.get("redirect_uris", "")
    body.append(ac.TextInput(id="redirect_uris", label="Redirect URIs (one per line)", is_multiline=True,
                             value="\n".join(uris) if isinstance(uris, (list, tuple)) else str(uris)))
    body.extend(error_line(errors.get("redirect_uris")))
    for field, label in TOGGLES:
        raw = values.get(field, True if field != "create_service_principal" else False)
        on = raw if isinstance(raw, bool) else str(raw).lower() == "true"
        body.append(ac.ToggleInput(id=field, title=label, value="true" if on else "false", value_on="true", value_off="false"))
        body.extend(error_line(errors.get(field)))
    body.extend(error_line(errors.get("agent")))
    return finish(body, [
        ac.SubmitAction(title="Review plan", data=action_data(Verb.FORM_SUBMIT, card_id)),
        ac.SubmitAction(title="Cancel", data=action_data(Verb.FORM_CANCEL, card_id), associated_inputs="none"),
    ])
