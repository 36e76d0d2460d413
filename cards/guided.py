"""The cards of the steps a person does: the guided-step card (posted in the conversation, updated in place) and the
client secret card (returned only to the requester, in an Action.Execute answer, never posted).

Values a person copies (client ID, tenant ID, the secret) are shown exactly as they are: no soft hyphens or
zero-width spaces that would travel with a copy into Copilot Studio."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping

import microsoft_teams.cards as ac

from provisioning.models import JobView, StepName, StepStatus, StepView

from .actions import STEP, Verb, action_data
from .common import error_line, facts, finish, heading, text, title, utc

STEP_WORDS = {StepStatus.DONE: "✓ done", StepStatus.OVERRIDDEN: "✓! continued without verification", StepStatus.PROPAGATING: "⏳ taking effect",
              StepStatus.SKIPPED: "– skipped", StepStatus.FAILED: "✗ failed", StepStatus.PENDING: "○ pending", StepStatus.RUNNING: "◐ running",
              StepStatus.RETRYING: "↻ retrying"}
SANDBOX = "Do it in the sandbox (emulated Copilot Studio)"


def _value_lines(values: tuple[tuple[str, str], ...]) -> list[Any]:
    """Label and value on one wrapped line each: long values (a provider's name) are never clipped as in a FactSet."""
    return [ac.RichTextBlock(inlines=[ac.TextRun(text=f"{label}: ", weight="Bolder"), ac.TextRun(text=value or "—")]) for label, value in values]


def _execute(title_: str, verb: str, data: dict[str, str]) -> Any:
    """Action.Execute (the answer replaces the card for the clicker only), with the Action.Submit fallback Teams asks for."""
    return ac.ExecuteAction(title=title_, verb=verb, data=data, associated_inputs="none").with_fallback(ac.SubmitAction(title=title_, data=data))


def guided_step_card(card_id: str, job: JobView, step: StepView, *, sandbox: bool, secret_available: bool,
                     values: Mapping[str, str] | None = None, errors: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`values`/`errors`: what the person typed into the card's inputs and what is wrong with it, next to each field."""
    body: list[Any] = [title(f"Your turn: {step.step.label}"), text(f"Agent '{job.agent.name}'. Job {job.id[:8]}.", subtle=True)]
    if step.status != StepStatus.WAITING_FOR_OPERATOR:
        body.append(ac.TextBlock(text=STEP_WORDS.get(step.status, step.status.value), weight="Bolder", wrap=True,
                                 color="Attention" if step.status == StepStatus.FAILED else "Good"))
        if step.message:
            body.append(text(step.message))
        return finish(body)
    instructions = step.instructions
    on = {STEP: step.step.value}
    actions: list[Any] = []
    if instructions is not None:
        body.extend(text(f"{n}. {line}") for n, line in enumerate(instructions.steps, 1))
        body.extend(_value_lines(instructions.values))
        for field, label, hint in instructions.inputs:
            body.append(ac.TextInput(id=field, label=label, placeholder=hint, value=(values or {}).get(field, ""), is_required=True,
                                     error_message=f"Paste the {label.lower()} from Copilot Studio.", max_length=600))
            body.extend(error_line((errors or {}).get(field)))
        if instructions.previous:
            when_, who = instructions.previous[0], instructions.previous[1]
            body.append(text(f"'Require secured access' was confirmed for this agent before, by {who} ({when_}). If it is still on, "
                             "keep that confirmation instead of waiting out the propagation window again (recorded).", subtle=True))
            actions.append(ac.SubmitAction(title="Keep the earlier confirmation", associated_inputs="none", data=action_data(Verb.STEP_KEEP, card_id, job.id, **on)))
        if instructions.secret_handoff:
            actions.extend(_secret_actions(body, card_id, job, secret_available))
    if step.verification:
        body.append(ac.TextBlock(text=f"Last check: {step.verification}", wrap=True, color="Attention"))
    if instructions is not None and instructions.inputs:
        actions.insert(0, ac.SubmitAction(title="Add the federated credential", data=action_data(Verb.FEDERATED_SUBMIT, card_id, job.id, **on)))
    else:
        actions.insert(0, ac.SubmitAction(title="Done, check it", data=action_data(Verb.STEP_DONE, card_id, job.id, **on), associated_inputs="none"))
    if step.verification:
        actions.append(ac.SubmitAction(title="Continue anyway", data=action_data(Verb.STEP_OVERRIDE, card_id, job.id, **on), associated_inputs="none"))
    if sandbox:
        actions.append(ac.SubmitAction(title=SANDBOX, data=action_data(Verb.STEP_SANDBOX, card_id, job.id, **on), associated_inputs="none"))
    for label, url in (instructions.links if instructions else ()):
        actions.append(ac.OpenUrlAction(title=label, url=url))
    return finish(body, actions)


def _secret_actions(body: list[Any], card_id: str, job: JobView, secret_available: bool) -> list[Any]:
    who = job.requested_by.name or "the requester"
    if secret_available:
        until = f" until {utc(job.handoff_expires_at)}" if job.handoff_expires_at else ""
        body.append(text(f"Only {who} can see the client secret. It stays on their screen until they select 'I copied it'; it is kept{until}, "
                         "then removed from the app registration.", subtle=True))
        return [_execute("Show client secret", Verb.SECRET_REVEAL, action_data(Verb.SECRET_REVEAL, card_id, job.id))]
    body.append(text("The client secret was handed over (it is not stored any more). If it never reached Copilot Studio, make a new one: "
                     "the old one is removed from the app registration.", subtle=True))
    return [ac.SubmitAction(title="Make a new client secret", associated_inputs="none",
                            data=action_data(Verb.SECRET_RENEW, card_id, job.id, **{STEP: StepName.COPILOT_AUTHENTICATION.value}))]


def secret_card(card_id: str, job: JobView, secret_text: str, *, client_id: str, expires: datetime | str | None,
                handoff_ends: datetime | None, sandbox: bool) -> dict[str, Any]:
    """The only card that ever holds a secret: returned to the requester alone, in an invoke answer, never posted.
    It stays on their screen (the bot does not update that message meanwhile) until they select 'I copied it'."""
    body: list[Any] = [
        title("Client secret: only you see this"),
        text("Paste it into Copilot Studio's Client secret field (Settings → Security → Authentication), select Save there, "
             "then select 'I copied it' here."),
        facts([("Client ID", client_id), ("Secret expires", utc(expires))]),
        ac.TextInput(id="secret", label="Client secret", value=secret_text, is_multiline=False),
        text(f"It stays here until you select 'I copied it'. If you don't, the stored copy is removed from the app registration at "
             f"{utc(handoff_ends)}." if handoff_ends else "It stays here until you select 'I copied it'.", subtle=True),
    ]
    actions = [_execute("I copied it", Verb.SECRET_COPIED, action_data(Verb.SECRET_COPIED, card_id, job.id))]
    if sandbox:
        data = action_data(Verb.STEP_SANDBOX, card_id, job.id, **{STEP: StepName.COPILOT_AUTHENTICATION.value})
        actions.append(_execute(SANDBOX, Verb.STEP_SANDBOX, data))
    return finish(body, actions)


def secret_refused_card(reason: str, *, heading_text: str = "The client secret can't be shown") -> dict[str, Any]:
    return finish([heading(heading_text, color="Attention"), text(reason)])
