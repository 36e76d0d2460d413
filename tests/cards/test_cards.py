"""Every card the bot can send, rendered with representative data, is valid Adaptive Cards 1.5."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import jsonschema
import pytest

import cards
from cards.actions import Verb
from provisioning.models import (
    Actor,
    AgentRef,
    AgentSummary,
    Change,
    GuidedInstructions,
    JobStatus,
    JobView,
    Plan,
    PlannedStep,
    PreflightCheck,
    PreflightReport,
    SetupRequest,
    StepAction,
    StepName,
    StepStatus,
    StepView,
)
from provisioning.steps import STEPS
from sandbox.schema import CONTRACTS

SCHEMA = json.loads((CONTRACTS / "adaptive-card-1.5.json").read_text())
VALIDATOR = jsonschema.Draft6Validator(SCHEMA)
NOW = datetime(2026, 11, 24, 12, 0, tzinfo=timezone.utc)
AGENT = AgentSummary("https://contoso.crm.dynamics.com", "b0b0b0b0-0000-0000-0000-000000000001", "Contoso Support", "cr6a1_contosoSupport")
LONG = AgentSummary("https://contoso.crm.dynamics.com", "b0b0b0b0-0000-0000-0000-000000000002", "Contoso Returns and Warranty Claims Assistant", "cr6a1_x")
REQUEST = SetupRequest(agent=AgentRef(AGENT.environment_url, AGENT.schema_name), app_display_name="Contoso Support auth")
REQ, APP = Actor("aad-1", "Riley Requester"), Actor("aad-2", "Avery Approver")
SETUP_STEPS = [s.name for s in STEPS if s.name != StepName.RETIRE_CREDENTIAL]  # a setup's steps, in order
SECRET = "Xy9~secret-text-that-must-stay-private-0123"


def valid(card: dict[str, Any]) -> dict[str, Any]:
    errors = [e.message for e in VALIDATOR.iter_errors(card)]
    assert not errors, errors[:3]
    assert card["version"] == "1.5" and card["type"] == "AdaptiveCard"
    assert SECRET not in json.dumps(card) or card["body"][0]["text"].startswith("Client secret")
    return card


def actions(card: dict[str, Any]) -> list[dict[str, Any]]:
    return card.get("actions", [])


def plan(action_mix: bool = True) -> Plan:
    steps = tuple(
        PlannedStep(name, action, f"{action.value} {name.value}", (Change("web.redirectUris", None, ["https://token.botframework.com/.auth/web/redirect"]),) if action == StepAction.CREATE else (), ("a note",))
        for name, action in zip(SETUP_STEPS, [StepAction.CREATE, StepAction.CREATE, StepAction.NO_CHANGE, StepAction.NO_CHANGE, StepAction.MANUAL, StepAction.UPDATE, StepAction.MANUAL, StepAction.MANUAL], strict=True)
    )
    report = PreflightReport((PreflightCheck("secret_lifetime_policy", True, "The tenant's secret-lifetime policy could not be read (needs Policy.Read.All).", advice=True),))
    return Plan(REQUEST, AGENT, steps, report, "f" * 64, NOW)


def job(status: JobStatus = JobStatus.RUNNING, **step_status: StepStatus) -> JobView:
    instructions = GuidedInstructions("Set authentication", ("Open Copilot Studio.", "Paste the client ID."), (("Client ID", "c1"),),
                                      (("Open Copilot Studio", "https://copilotstudio.microsoft.com/"),), True)
    steps = []
    for name in SETUP_STEPS:
        s = step_status.get(name.value, StepStatus.DONE)
        steps.append(StepView(name, s, message="Graph throttled (429); trying again in 4 s" if s == StepStatus.RETRYING else "A step message. Retry.",
                              instructions=instructions if s == StepStatus.WAITING_FOR_OPERATOR else None,
                              verification="authenticationmode 2" if s == StepStatus.WAITING_FOR_OPERATOR else "",
                              outputs={"client_id": "c1", "object_id": "o1"} if name == StepName.APP_REGISTRATION else {"secret_hint": "Xy9…", "secret_expires": "2027-05-23"},
                              due_at=NOW if s == StepStatus.PROPAGATING else None))
    return JobView("job-1234567890", status, "f" * 64, REQUEST, AGENT, tuple(steps), REQ, APP, NOW, NOW, secret_available=True)


def test_conversation_cards() -> None:
    welcome = valid(cards.welcome_card("c1"))
    assert {a["data"]["action"] for a in actions(welcome)} == {Verb.START_SETUP, Verb.SHOW_STATUS}
    assert "/setup copilot" in json.dumps(valid(cards.help_card("c2", note="I did not understand 'hello'.")))
    valid(cards.notice_card("You can't approve this plan", "Only approvers can.", style="error"))
    assert "None yet" in json.dumps(valid(cards.status_card([])))
    assert "waiting for you" in json.dumps(valid(cards.status_card([job(JobStatus.WAITING_FOR_OPERATOR, copilot_authentication=StepStatus.WAITING_FOR_OPERATOR)])))


def test_agent_choice_marks_long_names_and_handles_none() -> None:
    card = valid(cards.agent_choice_card("c1", [AGENT, LONG], error="Choose an agent."))
    choices = card["body"][2]["choices"]
    assert choices[0]["value"] == f"{AGENT.environment_url}|{AGENT.bot_id}"
    assert "too long for Customer Service" in choices[1]["title"]
    assert card["body"][3]["text"] == "Choose an agent." and card["body"][3]["color"] == "Attention"
    empty = valid(cards.agent_choice_card("c1", []))
    assert "DATAVERSE_URL" in json.dumps(empty) and [a["data"]["action"] for a in actions(empty)] == [Verb.FORM_CANCEL]


def test_details_card_keeps_values_and_puts_each_error_under_its_field() -> None:
    fields = ["app_display_name", "sign_in_audience", "secret_lifetime_days", "redirect_uris", "implicit_grant_access_tokens",
              "implicit_grant_id_tokens", "require_secured_access", "connect_customer_service", "create_service_principal"]
    errors = {f: f"problem with {f}" for f in fields}
    values = {"app_display_name": "My app " + "x" * 200, "redirect_uris": ["https://a.example.com/cb", "https://b.example.com/cb"],
              "connect_customer_service": "false"}
    card = valid(cards.details_card("c9", AGENT, values, errors))
    body = card["body"]
    for field in fields:
        index = next(i for i, e in enumerate(body) if e.get("id") == field)
        assert body[index + 1]["text"] == f"problem with {field}"
    assert next(e for e in body if e.get("id") == "redirect_uris")["value"] == "https://a.example.com/cb\nhttps://b.example.com/cb"
    assert next(e for e in body if e.get("id") == "connect_customer_service")["value"] == "false"
    assert all(a["data"]["card"] == "c9" for a in actions(card))


@pytest.mark.parametrize("state", ["pending", "approved", "cancelled", "stale", "refused"])
def test_plan_card_shows_every_action_and_buttons_only_while_pending(state: str) -> None:
    card = valid(cards.plan_card("p1", plan(), requested_by=REQ, approvers="Avery Approver", state=state))
    text = json.dumps(card)
    for word in ("Create", "No change", "Update", "You do this by hand", "Policy.Read.All", "ffffffffffff"):
        assert word in text
    verbs = [a["data"]["action"] for a in actions(card)]
    assert verbs == ([Verb.PLAN_APPROVE, Verb.PLAN_CANCEL] if state == "pending" else [])
    if state == "pending":
        assert actions(card)[0]["data"]["plan_hash"] == "f" * 64


def test_progress_card_for_every_step_status() -> None:
    for status in StepStatus:
        card = valid(cards.progress_card("g1", job(JobStatus.RUNNING, publish=status)))
        assert "Publish the agent" in json.dumps(card) or status == StepStatus.SKIPPED
    failed = valid(cards.progress_card("g1", job(JobStatus.FAILED, publish=StepStatus.FAILED)))
    assert [a["data"]["action"] for a in actions(failed)] == [Verb.JOB_RETRY, Verb.JOB_CANCEL]
    assert all(a["data"]["job"] == "job-1234567890" for a in actions(failed))
    done = valid(cards.progress_card("g1", job(JobStatus.COMPLETED)))
    assert actions(done) == []
    propagating = valid(cards.progress_card("g1", job(JobStatus.PROPAGATING, secured_access=StepStatus.PROPAGATING)))
    assert "in effect by 24 November 2026, 12:00 UTC" in json.dumps(propagating)


def test_guided_card_buttons() -> None:
    view = job(JobStatus.WAITING_FOR_OPERATOR, copilot_authentication=StepStatus.WAITING_FOR_OPERATOR)
    card = valid(cards.guided_step_card("s1", view, view.step(StepName.COPILOT_AUTHENTICATION), sandbox=True, secret_available=True))
    kinds = [(a["type"], a.get("title")) for a in actions(card)]
    assert ("Action.Execute", "Show client secret") in kinds
    assert "It stays on their screen until they select 'I copied it'" in json.dumps(card)
    execute = next(a for a in actions(card) if a["type"] == "Action.Execute")
    assert execute["verb"] == Verb.SECRET_REVEAL and execute["fallback"]["type"] == "Action.Submit"
    assert any("sandbox" in (t or "") for _, t in kinds) and ("Action.Submit", "Continue anyway") in kinds
    assert "Last check: authenticationmode 2" in json.dumps(card)
    real = valid(cards.guided_step_card("s1", view, replace(view.step(StepName.COPILOT_AUTHENTICATION), verification=""), sandbox=False, secret_available=False))
    titles = [a.get("title") for a in actions(real)]
    assert "Continue anyway" not in titles and not any("sandbox" in (t or "") for t in titles) and "Show client secret" not in titles
    assert "Make a new client secret" in titles, "once the secret was handed over, the way out is a new one"
    done = valid(cards.guided_step_card("s1", view, replace(view.step(StepName.COPILOT_AUTHENTICATION), status=StepStatus.DONE, message="Verified."), sandbox=True, secret_available=False))
    assert actions(done) == []


def test_outcome_cards_and_the_secret_stays_in_the_secret_card() -> None:
    view = job(JobStatus.WAITING_FOR_OPERATOR, copilot_authentication=StepStatus.WAITING_FOR_OPERATOR)
    secret = valid(cards.secret_card("s1", view, SECRET, client_id="c1", expires="2027-05-31T07:45:12Z", handoff_ends=NOW, sandbox=True))
    assert SECRET in json.dumps(secret)
    assert [a["title"] for a in actions(secret)] == ["I copied it", "Do it in the sandbox (emulated Copilot Studio)"]
    assert all(a["type"] == "Action.Execute" for a in actions(secret)), "answers that replace the card for the requester alone"
    assert "31 May 2027, 07:45 UTC" in json.dumps(secret)
    for card in (cards.secret_refused_card("Only the requester can see it."),
                 cards.reminder_card(job(), due_at=NOW, in_effect=False, delay_text="2 hours"),
                 cards.reminder_card(job(), due_at=NOW, in_effect=True, delay_text="2 hours"),
                 cards.completion_card(job(JobStatus.COMPLETED, customer_service_connection=StepStatus.OVERRIDDEN), entra_url="https://entra.microsoft.com/x", copilot_url="https://copilotstudio.microsoft.com/")):
        assert SECRET not in json.dumps(valid(card))
    completion = cards.completion_card(job(JobStatus.COMPLETED, customer_service_connection=StepStatus.OVERRIDDEN), entra_url="https://e", copilot_url="https://c")
    assert "Continued without verification" in json.dumps(completion) and "Xy9" not in json.dumps(completion, ensure_ascii=False), "not even the hint"
    assert cards.as_attachment(secret).content_type == "application/vnd.microsoft.card.adaptive"
