"""The plan card: the provisioning service's diff, step by step, with Approve and Cancel while pending."""

from __future__ import annotations

import json
from typing import Any

import microsoft_teams.cards as ac

from provisioning.models import Actor, Plan, StepAction

from .actions import Verb, action_data
from .common import finish, text, title

BADGES = {
    StepAction.CREATE: ("Create", "Good"),
    StepAction.UPDATE: ("Update", "Warning"),
    StepAction.NO_CHANGE: ("No change", None),
    StepAction.MANUAL: ("You do this by hand", "Accent"),
}
STATES = {
    "pending": None,
    "approved": "Approved: the setup is running.",
    "cancelled": "Cancelled: nothing was changed.",
    "stale": "Not applied: the tenant changed after this plan was made. Review the new plan.",
    "refused": "Refused.",
}


def _show(value: Any) -> str:
    if value is None:
        return "(none)"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value) or "(empty)"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value) if not isinstance(value, dict) else json.dumps(value)


def plan_card(card_id: str, plan: Plan, *, requested_by: Actor, approvers: str, state: str = "pending", note: str | None = None) -> dict[str, Any]:
    body: list[Any] = [
        title(f"Plan for '{plan.agent.name}'"),
        text(f"Requested by {requested_by.name or requested_by.id}. Plan {plan.hash[:12]}.", subtle=True),
    ]
    for step in plan.steps:
        label, color = BADGES[step.action]
        items: list[Any] = [
            ac.TextBlock(text=f"{label}: {step.step.label}", weight="Bolder", color=color, wrap=True),
            text(step.summary),
        ]
        if step.changes:
            items.append(ac.FactSet(facts=[ac.Fact(title=c.field, value=f"{_show(c.before)} → {_show(c.after)}") for c in step.changes]))
        items.extend(text(n, subtle=True) for n in step.notes)
        body.append(ac.Container(items=items, separator=True, spacing="Medium"))
    warnings = [c for c in plan.preflight.checks if "could not" in c.message]
    for check in warnings:
        body.append(text(check.message, color="Warning"))
    if STATES.get(state):
        body.append(ac.TextBlock(text=STATES[state] or "", weight="Bolder", wrap=True, color="Attention" if state in ("stale", "refused") else "Good"))
    if note:
        body.append(text(note))
    actions: list[Any] = []
    if state == "pending":
        body.append(text(f"Who may approve: {approvers}", subtle=True))
        actions = [
            ac.SubmitAction(title="Approve", data=action_data(Verb.PLAN_APPROVE, card_id, plan_hash=plan.hash), associated_inputs="none"),
            ac.SubmitAction(title="Cancel", data=action_data(Verb.PLAN_CANCEL, card_id), associated_inputs="none"),
        ]
    return finish(body, actions)
