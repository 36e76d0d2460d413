"""The progress card (one per job, updated in place) and the guided-step card."""

from __future__ import annotations

from typing import Any

import microsoft_teams.cards as ac

from provisioning.models import JobStatus, JobView, StepStatus, StepView

from .actions import Verb, action_data
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
    JobStatus.CANCELLING: "Cancelling: removing what it made", JobStatus.CANCELLED: "Cancelled", JobStatus.COMPLETED: "Done",
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
    doing = {"rotate": "Changing the credential of", "repair": "Putting back the setup of", "remove": "Removing the setup of"}.get(
        job.request.purpose, "Setting up")
    body: list[Any] = [title(f"{doing} '{job.agent.name}': {HEADERS[job.status]}")]
    for step in job.steps:
        if step.status != StepStatus.SKIPPED:
            body.extend(_line(step))
    app = next((s.outputs for s in job.steps if s.step.value == "app_registration" and s.outputs), None)
    if app:
        body.append(facts([("Client ID", app.get("client_id", "")), ("Object ID", app.get("object_id", ""))]))
    body.append(text(f"Requested by {job.requested_by.name or job.requested_by.id}, approved by {job.approved_by.name or job.approved_by.id}. "
                     f"Updated {utc(job.updated_at)}. Job {job.id[:8]}.", subtle=True))
    if job.cleanup:
        body.append(text("Removed, or being removed, from the tenant:", weight="Bolder"))
        body.extend(text(f"{'✓' if state == 'done' else '↻' if state == 'retrying' else '○'} {what}") for what, state in job.cleanup)
    actions: list[Any] = []
    if job.status == JobStatus.FAILED and can_retry:
        actions.append(ac.SubmitAction(title="Retry", data=action_data(Verb.JOB_RETRY, card_id, job.id), associated_inputs="none"))
    if not job.status.terminal and job.status != JobStatus.CANCELLING:
        actions.append(ac.SubmitAction(title="Cancel setup" if job.request.purpose == "setup" else "Cancel this change", data=action_data(Verb.JOB_CANCEL, card_id, job.id), associated_inputs="none"))
    return finish(body, actions)
