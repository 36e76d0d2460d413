"""Cards about outcomes: the one-time secret, the propagation reminder, and the completion summary."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import microsoft_teams.cards as ac

from provisioning.models import JobView, StepName, StepStatus

from .common import facts, finish, text, title, utc


def secret_card(client_id: str, secret_text: str, expires: datetime | str | None) -> dict[str, Any]:
    """The only card that ever holds a secret. It is returned in an invoke response only, never posted."""
    shown = utc(expires) if isinstance(expires, datetime) else (expires or "—")
    return finish([
        title("Client secret: shown once"),
        text("Copy it now into Copilot Studio's Client secret field. It is not stored anywhere and cannot be shown again."),
        facts([("Client ID", client_id), ("Expires", shown)]),
        ac.TextInput(id="secret", label="Client secret", value=secret_text, is_multiline=False),
    ])


def secret_refused_card(reason: str) -> dict[str, Any]:
    return finish([ac.TextBlock(text="The client secret can't be shown", weight="Bolder", color="Attention", wrap=True), text(reason)])


def reminder_card(job: JobView, *, due_at: datetime, in_effect: bool, delay_text: str) -> dict[str, Any]:
    if in_effect:
        return finish([
            title(f"Secured access is now in effect for '{job.agent.name}'"),
            text(f"The propagation window ({delay_text}) has passed: the web channel now requires secured access."),
            text("Next: test the agent from the Customer Service chat widget; Direct Line clients need a secret or token now."),
        ])
    return finish([
        title(f"Reminder set: secured access for '{job.agent.name}'"),
        text(f"'Require secured access' takes up to {delay_text} to take effect. Until then the old setting applies."),
        facts([("In effect by", utc(due_at))]),
        text("I will post here again when the window has passed.", subtle=True),
    ])


def completion_card(job: JobView, *, entra_url: str, copilot_url: str) -> dict[str, Any]:
    app = job.step(StepName.APP_REGISTRATION).outputs
    secret = job.step(StepName.CLIENT_SECRET).outputs
    body: list[Any] = [
        title(f"'{job.agent.name}' is set up"),
        facts([("Client ID", app.get("client_id", "")), ("Object ID", app.get("object_id", "")),
               ("Secret", f"{secret.get('secret_hint', '—')} (expires {secret.get('secret_expires', '—')})"),
               ("Requested by", job.requested_by.name or job.requested_by.id), ("Approved by", job.approved_by.name or job.approved_by.id)]),
    ]
    verified = [s for s in job.steps if s.status == StepStatus.DONE and s.message]
    overridden = [s for s in job.steps if s.status == StepStatus.OVERRIDDEN]
    if verified:
        body.append(ac.TextBlock(text="What was done and checked", weight="Bolder", wrap=True))
        body.extend(text(f"✓ {s.step.label}: {s.message}") for s in verified)
    if overridden:
        body.append(ac.TextBlock(text="Continued without verification", weight="Bolder", color="Warning", wrap=True))
        body.extend(text(f"! {s.step.label}: {s.message}") for s in overridden)
    return finish(body, [ac.OpenUrlAction(title="App registration in Entra", url=entra_url),
                         ac.OpenUrlAction(title="Open Copilot Studio", url=copilot_url)])
