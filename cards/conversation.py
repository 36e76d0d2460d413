"""Cards for talking to the bot: welcome, help, notices, this conversation's setups."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import microsoft_teams.cards as ac

from provisioning.models import JobView, StepStatus
from provisioning.setups import SetupView

from .actions import Verb, action_data
from .common import finish, heading, text, title, utc
from .day_two import setup_items

BOT_NAME = "Copilot Setup"  # the bot's short name in Teams (manifest name.short), what people @mention

COMMANDS = (
    ("/setup copilot", "Set up a Copilot Studio agent for Dynamics 365 Customer Service."),
    ("status", "The setups started in this conversation and where they are."),
    ("cancel", "Stop the setup questions in progress."),
    ("remove copilot", "Remove a setup made here: the app registration I made, with the Copilot Studio side guided."),
    ("help", "This list."),
)


def welcome_card(card_id: str, *, bot_name: str = BOT_NAME) -> dict[str, Any]:
    return finish(
        [
            title("Copilot Setup Bot"),
            text("I set up a Copilot Studio agent to sign users in and work in Dynamics 365 Customer Service: the Entra app "
                 "registration, its credential (a federated credential by default: no secret at all), publishing, and I guide "
                 "you through the steps Microsoft offers no API for, then check them. Afterwards I watch the setup: expiry, "
                 "changes, rotation and removal."),
            text("Nothing changes until someone allowed to approve has seen the exact plan and approved it.", subtle=True),
            text(f"In a channel, mention me: @{bot_name} setup copilot", subtle=True),
        ],
        [
            ac.SubmitAction(title="Set up an agent", data=action_data(Verb.START_SETUP, card_id)),
            ac.SubmitAction(title="Status", data=action_data(Verb.SHOW_STATUS, card_id)),
        ],
    )


def help_card(card_id: str, note: str | None = None, *, bot_name: str = BOT_NAME) -> dict[str, Any]:
    body: list[Any] = [title("What I can do")]
    if note:
        body.append(text(note, color="Warning"))
    for command, meaning in COMMANDS:
        body.append(ac.RichTextBlock(inlines=[ac.TextRun(text=command, weight="Bolder"), ac.TextRun(text=f" — {meaning}")]))
    body.append(text(f"In a channel or group chat, mention me first, e.g. @{bot_name} status.", subtle=True))
    return finish(body, [ac.SubmitAction(title="Set up an agent", data=action_data(Verb.START_SETUP, card_id))])


def notice_card(heading: str, message: str, *, style: str = "default") -> dict[str, Any]:
    color = {"error": "Attention", "warning": "Warning", "good": "Good"}.get(style)
    return finish([ac.TextBlock(text=heading, weight="Bolder", wrap=True, color=color), text(message)])


STATUS_WORDS = {
    "queued": "queued", "running": "running", "waiting_for_operator": "waiting for you", "propagating": "waiting for secured access to take effect",
    "failed": "failed", "cancelled": "cancelled", "completed": "done",
}


def current_step(job: JobView) -> str:
    for step in job.steps:
        if not step.status.finished and step.status != StepStatus.PROPAGATING:
            return step.step.label
    return "—"


def status_card(jobs: Sequence[JobView], dead_letters: Mapping[str, Sequence[Mapping[str, Any]]] | None = None, *,
                setups: Sequence[SetupView] = (), card_id: str = "", everyone: bool = False) -> dict[str, Any]:
    """`dead_letters`: per job, the cards Teams refused for good (the bot was removed from a chat, say). `setups`: the
    agents set up (with their health and day-two buttons); `everyone`: an approver's view, all conversations."""
    heading_text = "Setups in every conversation" if everyone else "Setups in this conversation"
    if not jobs and not setups:
        return finish([title(heading_text), text("None yet. Type /setup copilot to start one.")])
    body: list[Any] = [title(heading_text)]
    if setups:
        body.extend(setup_items(card_id, setups))
        if jobs:
            body.append(heading("Recent jobs"))
    for job in jobs[-10:]:
        body.append(ac.TextBlock(text=f"{job.agent.name}: {STATUS_WORDS.get(job.status.value, job.status.value)}", weight="Bolder", wrap=True, separator=True))
        body.append(text(f"Current step: {current_step(job)}. Requested by {job.requested_by.name or job.requested_by.id}. "
                         f"Updated {utc(job.updated_at)}. Job {job.id[:8]}.", subtle=True, spacing="Small"))
        for what, state in job.cleanup:
            if state != "done":
                body.append(text(f"Still removing {what} from the tenant (retrying).", color="Warning", spacing="None"))
        for letter in (dead_letters or {}).get(job.id, ()):
            body.append(text(f"Teams refused the {letter.get('what', 'card')} for good ({letter.get('status')} {letter.get('code') or ''}, "
                             f"{utc(str(letter.get('at', '')))}): it was not posted.".replace(" ,", ","), color="Attention", spacing="None"))
    return finish(body)
