"""What the cards say, and how: one date format, the admin centers' labels for what the steps really plan, values
wrapped (never a long FactSet value), Graph's paths only under Details, skipped steps with why, both credential kinds."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from typing import Any, Iterator

import pytest

import cards
from cards.common import FACT_VALUE_LIMIT, ZWSP, breakable, utc
from provisioning.config import Settings
from provisioning.models import (
    Actor,
    AgentSummary,
    Change,
    JobStatus,
    JobView,
    Plan,
    PlannedStep,
    PreflightReport,
    SetupRequest,
    StepName,
    StepStatus,
    StepView,
)
from provisioning.steps import STEPS, StepContext
from tests.cards.test_cards import APP, REQ, valid

NOW = datetime(2027, 5, 31, 7, 45, 12, tzinfo=timezone.utc)
URIS = (
    "https://token.botframework.com/.auth/web/redirect",
    "https://europe.token.botframework.com/.auth/web/redirect",
    "https://contoso-customer-service-portal.westeurope.cloudapp.azure.com/signin-oidc/copilot-studio/returns-and-warranty-claims",
)
AGENT = AgentSummary("https://127.0.0.1:54321", "b0b0b0b0-0000-0000-0000-000000000002", "Contoso Returns and Warranty Claims Assistant",
                     "cr6a1_contosoReturnsWarranty", environment_name="Contoso (sandbox)")
REQUEST = SetupRequest(agent=AGENT.ref, app_display_name="Contoso Returns and Warranty Claims Assistant sign-in for Customer Service",
                       redirect_uris=URIS, create_service_principal=True)
SETTINGS = Settings("https://login.microsoftonline.com", "https://graph.microsoft.com", (AGENT.environment_url,), "tenant-1", "client-1")
EXISTING_APP = {
    "id": "o1", "appId": "c1", "displayName": "Old name", "signInAudience": "AzureADMyOrg",
    "web": {"redirectUris": [URIS[0], "https://old.example.com/callback"],
            "implicitGrantSettings": {"enableAccessTokenIssuance": False, "enableIdTokenIssuance": True}},
    "requiredResourceAccess": [],
}


def decided(app: dict[str, Any] | None = None, request: SetupRequest = REQUEST) -> tuple[PlannedStep, ...]:
    """What the real steps' `decide` plans for a tenant without the app (or with `app`) and an agent not yet set up."""
    ctx = StepContext(request=request, agent=AGENT, organization_id="6ac2279e-6331-4c31-95a9-a93935415b0e", tenant_id="tenant-1",
                      graph=None, dataverse=None, settings=SETTINGS)  # type: ignore[arg-type]  # decide reads neither
    current = {"app": app, "ours": [], "sp": None, "bot": {"authenticationmode": 2}, "user": None, "registration": "", "credential": None, "present": False}
    return tuple(step.decide(ctx, current) for step in STEPS)


def plan_of(steps: tuple[PlannedStep, ...], agent: AgentSummary = AGENT) -> Plan:
    return Plan(REQUEST, agent, steps, PreflightReport(()), "a" * 64, NOW)


def elements(node: Any) -> Iterator[dict[str, Any]]:
    """Every element and inline of a card, depth first."""
    if isinstance(node, dict):
        if "type" in node:
            yield node
        for value in node.values():
            yield from elements(value)
    elif isinstance(node, list):
        for item in node:
            yield from elements(item)


def shown_texts(card: dict[str, Any], *, hidden: bool = False) -> list[str]:
    """The text of each TextBlock and RichTextBlock as a person reads it (zero-width spaces removed); `hidden`: also
    what is inside a container that starts hidden."""
    out: list[str] = []

    def walk(items: list[dict[str, Any]]) -> None:
        for e in items:
            if e.get("isVisible") is False and not hidden:
                continue
            if e["type"] == "TextBlock":
                out.append(e["text"].replace(ZWSP, ""))
            elif e["type"] == "RichTextBlock":
                out.append("".join(run["text"] for run in e["inlines"]).replace(ZWSP, ""))
            walk(e.get("items", []))

    walk(card["body"])
    return out


def done_job(*, credential: str = "client_secret", plan: bool = True, **status: StepStatus) -> tuple[JobView, Plan | None]:
    outputs: dict[str, dict[str, str]] = {
        "app_registration": {"client_id": "11111111-2222-3333-4444-555555555555", "object_id": "66666666-7777-8888-9999-000000000000"},
        "client_secret": {"secret_hint": "Xy9…", "secret_expires": "2027-05-31T07:45:12.0000000Z"},
        "federated_credential": {"name": "contoso-github-main", "issuer": "https://token.actions.githubusercontent.com",
                                 "subject": "repo:contoso/customer-service-agents:environment:production"},
        "publish": {"published_on": "2026-12-01T09:30:00Z"},
    }
    steps = []
    unused = StepName.CLIENT_SECRET if credential == "federated_credential" else StepName.FEDERATED_CREDENTIAL
    for name in StepName:
        default = StepStatus.SKIPPED if name == unused else StepStatus.DONE
        steps.append(StepView(name, status.get(name.value, default), message=f"checked {name.value}",
                              outputs=outputs.get(name.value, {}) if name != unused else {}, due_at=NOW if name == StepName.SECURED_ACCESS else None))
    request = replace(REQUEST, credential="federated" if credential == "federated_credential" else "client_secret")
    job = JobView("job-1234567890", JobStatus.COMPLETED, "a" * 64, request, AGENT, tuple(steps), REQ, APP, NOW, NOW)
    return job, (plan_of(decided()) if plan else None)


@pytest.mark.parametrize(("moment", "shown"), [
    (NOW, "31 May 2027, 07:45 UTC"),
    (datetime(2027, 1, 2, 3, 4), "2 January 2027, 03:04 UTC"),  # naive: taken as UTC
    (datetime(2027, 5, 31, 9, 45, tzinfo=timezone(timedelta(hours=2))), "31 May 2027, 07:45 UTC"),
    ("2027-05-31T07:45:12Z", "31 May 2027, 07:45 UTC"),
    ("2027-05-31T07:45:12.0000000Z", "31 May 2027, 07:45 UTC"),  # Graph's seven-digit fractions
    ("2027-12-09T23:59:59.1234567+01:00", "9 December 2027, 22:59 UTC"),
    ("2027-05-23", "23 May 2027"),
    (date(2027, 5, 23), "23 May 2027"),
    (None, "—"), ("", "—"), ("now + 180 days", "now + 180 days"),
])
def test_one_readable_date_format(moment: Any, shown: str) -> None:
    assert utc(moment) == shown


def test_long_values_get_break_opportunities_that_do_not_change_what_is_read() -> None:
    uri = URIS[1]
    assert breakable(uri).replace(ZWSP, "") == uri
    assert breakable(uri).split(ZWSP) == ["https://", "europe", ".token", ".botframework", ".com/", ".auth/", "web/", "redirect"]
    assert breakable("Contoso Support auth") == "Contoso Support auth" and breakable("short.value") == "short.value"


def test_plan_card_speaks_the_admin_centers_words_for_what_the_steps_really_plan() -> None:
    card = valid(cards.plan_card("p1", plan_of(decided()), requested_by=REQ, approvers="Avery Approver"))
    shown = shown_texts(card)
    assert f"Name: {REQUEST.app_display_name}" in shown
    assert "Who can sign in: Accounts in any organization" in shown
    assert "Access tokens (implicit grant): On" in shown and "ID tokens (implicit grant): On" in shown
    assert "Client secret expires: 180 days after it is made" in shown
    at = shown.index("Redirect URIs")
    assert shown[at + 1:at + 4] == [f"• {uri}" for uri in URIS], "one redirect URI per line, each whole"
    at = shown.index("Microsoft Graph permissions")
    assert sorted(shown[at + 1:at + 3]) == ["• openid", "• profile"]
    assert "Published authentication: Authenticate manually (Microsoft Entra ID)" in shown
    assert "Service principal for: the new client ID" in shown
    assert "Environment: Contoso (sandbox). Requested by Riley Requester. Plan aaaaaaaaaaaa, made 31 May 2027, 07:45 UTC." in shown
    assert not [t for t in shown if "127.0.0.1" in t or "54321" in t]
    for path in ("web.redirectUris", "signInAudience", "implicitGrantSettings", "passwordCredential", "displayName", "requiredResourceAccess"):
        assert not [t for t in shown if path in t], f"{path} shows outside Details"


def test_an_update_marks_before_and_after() -> None:
    card = valid(cards.plan_card("p1", plan_of(decided(EXISTING_APP)), requested_by=REQ, approvers="anyone"))
    shown = shown_texts(card)
    assert "Update: Entra app registration" in shown
    at = shown.index("Who can sign in")
    assert shown[at + 1:at + 3] == ["Now: Accounts in this organization only", "After: Accounts in any organization"]
    at = shown.index("Access tokens (implicit grant)")
    assert shown[at + 1:at + 3] == ["Now: Off", "After: On"]
    at = shown.index("Redirect URIs")
    assert shown[at + 1:at + 5] == [f"Keep: {URIS[0]}", f"Add: {URIS[1]}", f"Add: {URIS[2]}", "Remove: https://old.example.com/callback"]
    assert "ID tokens (implicit grant)" not in "\n".join(shown), "an unchanged property is not listed"
    at = shown.index("Microsoft Graph permissions")
    assert sorted(shown[at + 1:at + 3]) == ["Add: openid", "Add: profile"]


def test_graph_paths_are_behind_a_details_toggle() -> None:
    card = valid(cards.plan_card("p1", plan_of(decided()), requested_by=REQ, approvers="anyone", state="approved"))
    toggles = [e for e in elements(card["body"]) if e["type"] == "Action.ToggleVisibility"]
    assert [t["title"] for t in toggles] == ["Details"]
    target = next(e for e in card["body"] if e.get("id") == toggles[0]["targetElements"][0])
    assert target["type"] == "Container" and target["isVisible"] is False
    inside = shown_texts({"body": [dict(target, isVisible=True)]})
    assert [t for t in inside if t.startswith("web.redirectUris: null → [")] and URIS[2] in "\n".join(inside)
    assert [t for t in inside if t.startswith('signInAudience: null → "AzureADMultipleOrgs"')]
    plain = plan_of(tuple(replace(s, changes=()) for s in decided()))
    assert not [e for e in elements(cards.plan_card("p1", plain, requested_by=REQ, approvers="x")) if e["type"] == "Action.ToggleVisibility"]


def test_skipped_steps_say_why_and_are_not_planned() -> None:
    steps = tuple(replace(s, skip_reason="the agent's name is over 30 characters", changes=(Change("x", None, "y"),))
                  if s.step == StepName.CUSTOMER_SERVICE_CONNECTION else s for s in decided())
    shown = shown_texts(valid(cards.plan_card("p1", plan_of(steps), requested_by=REQ, approvers="anyone")))
    assert "Connect to Dynamics 365 Customer Service: skipped — the agent's name is over 30 characters" in shown
    assert "You do this by hand: Connect to Dynamics 365 Customer Service" not in shown


def test_open_access_is_stated_next_to_approve_while_pending() -> None:
    plan = plan_of(decided())
    card = valid(cards.plan_card("p1", plan, requested_by=REQ, approvers="anyone in this conversation", open_access=True))
    shown = shown_texts(card)
    warning = "Open access (ALLOW_ANYONE=true): anyone in the allowed tenants may request and approve this setup."
    assert shown[-2:] == [warning, "Who may approve: anyone in this conversation"]
    assert warning not in shown_texts(cards.plan_card("p1", plan, requested_by=REQ, approvers="x"))
    assert warning not in shown_texts(cards.plan_card("p1", plan, requested_by=REQ, approvers="x", state="approved", open_access=True))


def test_the_environment_falls_back_to_the_host_without_its_port() -> None:
    unnamed = replace(AGENT, environment_name="")
    shown = shown_texts(cards.plan_card("p1", plan_of(decided(), unnamed), requested_by=REQ, approvers="x"))
    assert shown[1].startswith("Environment: 127.0.0.1. ")
    choice = valid(cards.agent_choice_card("c1", [AGENT, unnamed]))
    titles = [c["title"] for e in elements(choice) if e["type"] == "Input.ChoiceSet" for c in e["choices"]]
    assert titles == [f"{AGENT.name} (Contoso (sandbox)) (name too long for Customer Service)",
                      f"{AGENT.name} (127.0.0.1) (name too long for Customer Service)"]
    assert "Agent: Contoso Returns and Warranty Claims Assistant, in Contoso (sandbox)" in shown_texts(cards.details_card("c2", AGENT, {}, {}))


@pytest.mark.parametrize("plan", [True, False])
def test_completion_card_with_a_client_secret_says_what_was_done(plan: bool) -> None:
    job, approved = done_job(plan=plan)
    card = valid(cards.completion_card(job, entra_url="https://entra.microsoft.com/x", copilot_url="https://copilotstudio.microsoft.com/", plan=approved))
    shown = shown_texts(card)
    verb = "Created" if plan else "Set up"
    assert f"✓ {verb} the app registration '{REQUEST.app_display_name}'" in shown
    assert "Client ID: 11111111-2222-3333-4444-555555555555" in shown
    assert f"✓ {'Made' if plan else 'Set up'} a client secret, expires 31 May 2027, 07:45 UTC" in shown and not [t for t in shown if "Xy9" in t], "no part of the secret is posted, not even Graph's hint"
    assert f"✓ {verb} the app's service principal in this tenant" in shown
    assert "✓ Published the agent on 1 December 2026, 09:30 UTC" in shown
    assert "✓ Turned on secured access for the web channel, in effect since 31 May 2027, 07:45 UTC" in shown
    assert "✓ Connected to Dynamics 365 Customer Service (checked in Dataverse)" in shown
    assert "Continued without verification" not in shown and not [t for t in shown if "federated" in t.lower()]
    assert [a["title"] for a in card["actions"]] == ["App registration in Entra", "Open Copilot Studio"]


def test_completion_card_with_a_federated_credential_and_what_was_not_verified() -> None:
    job, approved = done_job(credential="federated_credential", customer_service_connection=StepStatus.OVERRIDDEN,
                             service_principal=StepStatus.SKIPPED)
    job = replace(job, steps=tuple(replace(s, message="Continued without verification by Avery Approver: no bot application user")
                                   if s.step == StepName.CUSTOMER_SERVICE_CONNECTION else s for s in job.steps))
    assert approved is not None
    shown = shown_texts(valid(cards.completion_card(job, entra_url="https://e", copilot_url="https://c", plan=approved)))
    assert "✓ Added a federated credential 'contoso-github-main'" in shown
    unplanned = shown_texts(cards.completion_card(job, entra_url="https://e", copilot_url="https://c"))
    assert "✓ Set up a federated credential 'contoso-github-main'" in unplanned  # without the plan it cannot say what it did
    assert "Issuer: https://token.actions.githubusercontent.com" in shown
    assert "Subject: repo:contoso/customer-service-agents:environment:production" in shown
    assert not [t for t in shown if "client secret" in t.lower()]
    at = shown.index("Continued without verification")
    assert shown[at + 1] == "! Connect to Dynamics 365 Customer Service: Continued without verification by Avery Approver: no bot application user"
    assert "Not part of this setup: Service principal." in shown
    assert not [t for t in shown if t.startswith("✓ Connected")]


def test_completion_card_leaves_out_what_a_job_does_not_have() -> None:
    job, _ = done_job(plan=False)
    bare = replace(job, steps=tuple(replace(s, outputs={}, due_at=None) for s in job.steps if s.step != StepName.CLIENT_SECRET))
    shown = shown_texts(valid(cards.completion_card(bare, entra_url="https://e", copilot_url="https://c")))
    assert "✓ Set up the app registration 'Contoso Returns and Warranty Claims Assistant sign-in for Customer Service'" in shown
    assert "✓ Published the agent" in shown and "✓ Turned on secured access for the web channel" in shown
    assert not [t for t in shown if t.startswith(("Client ID", "Starts with", "Issuer")) or "secret" in t or "expires" in t]
    details = shown_texts(cards.completion_card(bare, entra_url="https://e", copilot_url="https://c"), hidden=True)
    assert "Publish the agent: done. checked publish" in details


def test_help_and_welcome_use_the_bots_name() -> None:
    for card in (cards.help_card("h1", bot_name="Contoso Setup"), cards.welcome_card("w1", bot_name="Contoso Setup")):
        text = json.dumps(valid(card))
        assert "@Contoso Setup " in text and "@Copilot Setup" not in text
    assert "@Copilot Setup status" in json.dumps(cards.help_card("h1"))
    assert "/setup copilot — Set up a Copilot Studio agent for Dynamics 365 Customer Service." in shown_texts(cards.help_card("h1"))


def test_reminder_cards_show_the_time() -> None:
    job, _ = done_job()
    pending = shown_texts(valid(cards.reminder_card(job, due_at=NOW, in_effect=False, delay_text="2 hours")))
    assert "In effect by 31 May 2027, 07:45 UTC." in pending
    done = shown_texts(valid(cards.reminder_card(job, due_at=NOW, in_effect=True, delay_text="2 hours")))
    assert [t for t in done if "since 31 May 2027, 07:45 UTC" in t]


def test_no_long_value_in_any_factset() -> None:
    job, approved = done_job()
    long_actor = Actor("aad-9", "Maximilian Alexander Featherstonehaugh-Worthington")
    every = [
        cards.welcome_card("w"), cards.help_card("h", note="I did not understand that."),
        cards.status_card([replace(job, requested_by=long_actor, status=JobStatus.WAITING_FOR_OPERATOR)]),
        cards.agent_choice_card("a", [AGENT]), cards.details_card("d", AGENT, {"redirect_uris": list(URIS)}, {}),
        cards.plan_card("p", plan_of(decided()), requested_by=long_actor, approvers="x", open_access=True),
        cards.plan_card("p", plan_of(decided(EXISTING_APP)), requested_by=long_actor, approvers="x"),
        cards.completion_card(job, entra_url="https://e", copilot_url="https://c", plan=approved),
        cards.completion_card(done_job(credential="federated_credential")[0], entra_url="https://e", copilot_url="https://c"),
        cards.reminder_card(job, due_at=NOW, in_effect=False, delay_text="2 hours"),
    ]
    for card in every:
        valid(card)
        long = [f["value"] for e in elements(card) if e["type"] == "FactSet" for f in e["facts"] if len(f["value"]) > FACT_VALUE_LIMIT]
        assert not long, long
