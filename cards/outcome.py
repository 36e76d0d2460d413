"""Cards about outcomes: the one-time secret, the propagation reminder, and the completion summary."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

import microsoft_teams.cards as ac

from provisioning.models import CLIENT_SECRET, JobView, Plan, StepAction, StepName, StepStatus, StepView

from .common import breakable, environment_label, finish, heading, text, title, utc


def reminder_card(job: JobView, *, due_at: datetime, in_effect: bool, delay_text: str) -> dict[str, Any]:
    if in_effect:
        return finish([
            title(f"Secured access is now in effect for '{job.agent.name}'"),
            text(f"The propagation window ({delay_text}) has passed: since {utc(due_at)} the web channel requires secured access."),
            text("Next: test the agent from the Customer Service chat widget; Direct Line clients need a secret or token now."),
        ])
    return finish([
        title(f"Reminder set: secured access for '{job.agent.name}'"),
        text(f"'Require secured access' takes up to {delay_text} to take effect. Until then the old setting applies."),
        text(f"In effect by {utc(due_at)}.", weight="Bolder"),
        text("I will post here again when the window has passed.", subtle=True),
    ])


def completion_card(job: JobView, *, entra_url: str, copilot_url: str, plan: Plan | None = None) -> dict[str, Any]:
    """What the setup did, in the past tense, and what was continued without verification.

    `plan` (the approved plan) tells "Created" from "Updated" and "Kept"; without it the card says "Set up"."""
    return finish(_summary(job, plan), [ac.OpenUrlAction(title="App registration in Entra", url=entra_url),
                                       ac.OpenUrlAction(title="Open Copilot Studio", url=copilot_url)])


# What each step did, in the past tense, by the action the approved plan gave it (None: the plan is not known).
_PAST: dict[str, dict[StepAction | str | None, str]] = {  # by action, or by the job's purpose where that says more
    "app_registration": {StepAction.CREATE: "Created the app registration {name}", StepAction.UPDATE: "Updated the app registration {name}",
                         StepAction.NO_CHANGE: "Kept the app registration {name}: it was already as requested",
                         None: "Set up the app registration {name}"},
    "client_secret": {StepAction.CREATE: "Made a client secret{expires}", StepAction.NO_CHANGE: "Kept the client secret this bot made earlier{expires}",
                      None: "Set up a client secret{expires}"},
    "federated_credential": {StepAction.CREATE: "Added a federated credential{name}", StepAction.UPDATE: "Updated the federated credential{name}",
                             StepAction.NO_CHANGE: "Kept the federated credential{name}", None: "Set up a federated credential{name}"},
    "service_principal": {StepAction.CREATE: "Created the app's service principal in this tenant",
                          StepAction.NO_CHANGE: "Kept the app's service principal in this tenant", None: "Set up the app's service principal in this tenant"},
    "copilot_authentication": {StepAction.NO_CHANGE: "Copilot Studio already authenticated manually with Microsoft Entra ID",
                               "rotate": "Copilot Studio uses the new credential (checked in Dataverse)",
                               None: "Set Copilot Studio to authenticate manually with the app (checked in Dataverse)"},
    "publish": {StepAction.NO_CHANGE: "The published agent already used manual authentication", None: "Published the agent{published}"},
    "secured_access": {None: "Turned on secured access for the web channel{since}"},
    "customer_service_connection": {StepAction.NO_CHANGE: "The agent was already connected to Dynamics 365 Customer Service",
                                    None: "Connected to Dynamics 365 Customer Service (checked in Dataverse)"},
    "retire_credential": {StepAction.NO_CHANGE: "The old credential was gone already",
                          None: "Removed the old credential, after Copilot Studio used the new one"},
    "agent_authentication_off": {StepAction.NO_CHANGE: "The agent no longer used this app registration",
                                 None: "Copilot Studio stopped using the app registration (checked in Dataverse)"},
    "customer_service_disconnect": {StepAction.NO_CHANGE: "The agent was not connected to Customer Service",
                                    None: "Disconnected the agent from Dynamics 365 Customer Service (checked in Dataverse)"},
    "delete_app_registration": {StepAction.NO_CHANGE: "The app registration was gone already",
                                None: "Deleted the app registration (Entra keeps it in Deleted applications for 30 days)"},
}
DONE_TITLES = {"rotate": "'{name}' signs in with its new credential", "repair": "'{name}' is set up as approved again",
               "remove": "The setup of '{name}' is removed"}
# Outputs worth a line of their own under a step (long ids and URIs: wrapped, never in a FactSet).
_SHOWN = {
    "app_registration": (("client_id", "Client ID"), ("object_id", "Object ID")),
    "federated_credential": (("issuer", "Issuer"), ("subject", "Subject")),
    "service_principal": (("service_principal_id", "Object ID"),),
}
_WORDS = {StepStatus.DONE: "done", StepStatus.OVERRIDDEN: "continued without verification", StepStatus.SKIPPED: "skipped"}


def _summary(job: JobView, plan: Plan | None) -> list[Any]:
    planned: dict[str, StepAction] = {s.step.value: s.action for s in plan.steps} if plan else {}
    body: list[Any] = [
        title(DONE_TITLES.get(job.request.purpose, "'{name}' is set up").format(name=job.agent.name)),
        text(f"Environment: {environment_label(job.agent)}. Requested by {job.requested_by.name or job.requested_by.id}, "
             f"approved by {job.approved_by.name or job.approved_by.id}. Finished {utc(job.updated_at)}.", subtle=True),
    ]
    done = [s for s in job.steps if s.status == StepStatus.DONE]
    if done:
        body.append(heading("What was done"))
        for step in done:
            body.extend(_done(job, step, planned.get(step.step.value)))
    overridden = [s for s in job.steps if s.status == StepStatus.OVERRIDDEN]
    if overridden:
        body.append(heading("Continued without verification", color="Warning"))
        body.extend(text(f"! {s.step.label}: {s.message}") for s in overridden)
    unused = StepName.FEDERATED_CREDENTIAL if job.request.credential == CLIENT_SECRET else StepName.CLIENT_SECRET  # the other kind
    skipped = [s.step.label for s in job.steps if s.status == StepStatus.SKIPPED and s.step != unused]
    if skipped:
        body.append(text(f"Not part of this {'change' if job.request.purpose != 'setup' else 'setup'}: {'; '.join(skipped)}.", subtle=True))
    body.append(ac.ActionSet(actions=[ac.ToggleVisibilityAction(title="Details", target_elements=["completion-details"])]))
    body.append(ac.Container(id="completion-details", is_visible=False, spacing="None",
                             items=[*(_checked(s) for s in job.steps), text(f"Job {job.id}. Plan {job.plan_hash[:12]}.", subtle=True)]))
    return body


def _checked(step: StepView) -> ac.RichTextBlock:
    """A step by its name, its outcome and what its check found (the Details lines)."""
    runs = [ac.TextRun(text=f"{step.step.label}: ", weight="Bolder"), ac.TextRun(text=_WORDS.get(step.status, step.status.value))]
    if step.message:
        runs.append(ac.TextRun(text=f". {breakable(step.message)}", is_subtle=True))
    return ac.RichTextBlock(inlines=runs)


def _done(job: JobView, step: StepView, action: StepAction | None) -> list[Any]:
    name = step.step.value
    wording = _PAST.get(name)
    if wording is None:  # a step this card does not know yet: its own words
        return [text(f"✓ {step.step.label}: {step.message}" if step.message else f"✓ {step.step.label}")]
    out = step.outputs
    line = (wording.get(job.request.purpose) or wording.get(action) or wording[None]).format(
        name=_name(name, job, out), expires=f", expires {utc(out['secret_expires'])}" if out.get("secret_expires") else "",
        published=f" on {utc(out['published_on'])}" if out.get("published_on") else "",
        since=f", in effect since {utc(step.due_at)}" if step.due_at else "",
    )
    items: list[Any] = [text(f"✓ {line}")]
    for key, label in _SHOWN.get(name, ()):
        if out.get(key):
            items.append(ac.RichTextBlock(spacing="None", inlines=[ac.TextRun(text=f"{label}: ", is_subtle=True), ac.TextRun(text=breakable(out[key]))]))
    return items


def _name(step: str, job: JobView, outputs: Mapping[str, str]) -> str:
    if step == "app_registration":
        return f"'{job.request.app_display_name}'"
    if step == "federated_credential" and outputs.get("name"):
        return f" '{outputs['name']}'"
    return ""
