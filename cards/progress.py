"""The progress card (one per job, updated in place) and the guided-step card."""

from __future__ import annotations

from typing import Any

import microsoft_teams.cards as ac

from provisioning.models import JobStatus, JobView, StepStatus, StepView

from .actions import STEP, Verb, action_data
from .common import facts, finish, text, title, utc

ICONS = {
    StepStatus.PENDING: "○", StepStatus.RUNNING: "◐", StepStatus.RETRYING: "↻", StepStatus.WAITING_FOR_OPERATOR: "✋",
    StepStatus.PROPAGATING: "⏳", StepStatus.DONE: "✓", StepStatus.OVERRIDDEN: "✓!", StepStatus.SKIPPED: "–", StepStatus.FAILED: "✗",
}
WORDS = {
    StepStatus.PENDING: "pending", StepStatus.RUNNING: "running", StepStatus.RETRYING: "retrying",
    StepStatus.WAITING_FOR_OPERATOR: "waiting for you", StepStatus.PROPAGATING: "taking effect", StepStatus.DONE: "done",
    StepStatus.OVERRIDDEN: "continued without verification", StepStatus.SKIPPED: "skipped", StepStatus.FAILED: "failed",
}
HEADERS = {
    JobStatus.QUEUED: "Starting…", JobStatus.RUNNING: "Working…", JobStatus.WAITING_FOR_OPERATOR: "Waiting for you",
    JobStatus.PROPAGATING: "Waiting for secured access to take effect", JobStatus.FAILED: "Stopped: a step failed",
    JobStatus.CANCELLED: "Cancelled", JobStatus.COMPLETED: "Done",
}


def _line(step: StepView) -> list[Any]:
    line = f"{ICONS[step.status]} {step.step.label}: {WORDS[step.status]}"
    if step.status == StepStatus.PROPAGATING and step.due_at:
        line += f" (in effect by {utc(step.due_at)})"
    items: list[Any] = [ac.TextBlock(text=line, wrap=True, color="Attention" if step.status == StepStatus.FAILED else None,
                                     weight="Bolder" if step.status in (StepStatus.RUNNING, StepStatus.WAITING_FOR_OPERATOR, StepStatus.FAILED) else None)]
    if step.message and step.status in (StepStatus.FAILED, StepStatus.RETRYING, StepStatus.OVERRIDDEN):
        items.append(ac.TextBlock(text=step.message, wrap=True, size="Small", color="Attention" if step.status == StepStatus.FAILED else None, spacing="None"))
    return items


def progress_card(card_id: str, job: JobView, *, can_retry: bool = True) -> dict[str, Any]:
    body: list[Any] = [title(f"Setting up '{job.agent.name}': {HEADERS[job.status]}")]
    for step in job.steps:
        if step.status != StepStatus.SKIPPED:
            body.extend(_line(step))
    app = next((s.outputs for s in job.steps if s.step.value == "app_registration" and s.outputs), None)
    if app:
        body.append(facts([("Client ID", app.get("client_id", "")), ("Object ID", app.get("object_id", ""))]))
    body.append(text(f"Requested by {job.requested_by.name or job.requested_by.id}, approved by {job.approved_by.name or job.approved_by.id}. "
                     f"Updated {utc(job.updated_at)}. Job {job.id[:8]}.", subtle=True))
    actions: list[Any] = []
    if job.status == JobStatus.FAILED and can_retry:
        actions.append(ac.SubmitAction(title="Retry", data=action_data(Verb.JOB_RETRY, card_id, job.id), associated_inputs="none"))
    if not job.status.terminal:
        actions.append(ac.SubmitAction(title="Cancel setup", data=action_data(Verb.JOB_CANCEL, card_id, job.id), associated_inputs="none"))
    return finish(body, actions)


def guided_step_card(card_id: str, job: JobView, step: StepView, *, sandbox: bool, secret_available: bool) -> dict[str, Any]:
    body: list[Any] = [title(f"Your turn: {step.step.label}"), text(f"Agent '{job.agent.name}'. Job {job.id[:8]}.", subtle=True)]
    instructions = step.instructions
    if step.status != StepStatus.WAITING_FOR_OPERATOR:
        body.append(ac.TextBlock(text=f"{ICONS[step.status]} {WORDS[step.status]}", weight="Bolder", wrap=True, color="Good"))
        if step.message:
            body.append(text(step.message))
        return finish(body)
    if instructions is not None:
        body.extend(text(f"{n}. {line}") for n, line in enumerate(instructions.steps, 1))
        if instructions.values:
            body.append(facts(instructions.values))
    if step.verification:
        body.append(ac.TextBlock(text=f"Last check: {step.verification}", wrap=True, color="Attention"))
    actions: list[Any] = []
    if instructions is not None and instructions.secret_handoff and secret_available:
        data = action_data(Verb.SECRET_REVEAL, card_id, job.id)
        actions.append(ac.ExecuteAction(title="Show client secret (once)", verb=Verb.SECRET_REVEAL, data=data, associated_inputs="none")
                       .with_fallback(ac.SubmitAction(title="Show client secret (once)", data=data)))
    elif instructions is not None and instructions.secret_handoff:
        body.append(text("The client secret has been shown already; it is not stored any more. If it never reached Copilot Studio, "
                         "make a new one (the old one is removed from the app registration).", subtle=True))
        actions.append(ac.SubmitAction(title="Make a new client secret", associated_inputs="none",
                                       data=action_data(Verb.SECRET_RENEW, card_id, job.id, **{STEP: step.step.value})))
    for label, url in (instructions.links if instructions else ()):
        actions.append(ac.OpenUrlAction(title=label, url=url))
    actions.append(ac.SubmitAction(title="Done, check it", data=action_data(Verb.STEP_DONE, card_id, job.id, **{STEP: step.step.value}), associated_inputs="none"))
    if step.verification:
        actions.append(ac.SubmitAction(title="Continue anyway", data=action_data(Verb.STEP_OVERRIDE, card_id, job.id, **{STEP: step.step.value}), associated_inputs="none"))
    if sandbox:
        actions.append(ac.SubmitAction(title="Do it in the sandbox (emulated Copilot Studio)",
                                       data=action_data(Verb.STEP_SANDBOX, card_id, job.id, **{STEP: step.step.value}), associated_inputs="none"))
    return finish(body, actions)
