"""The plan card: the provisioning service's diff, step by step, in the words of the Entra and Copilot Studio
admin centers, with Approve and Cancel while pending.

Teams clips FactSet values and long words, so every value is a wrapped block of its own: a list shows one item
per line (each redirect URI whole), a change shows before → after. Graph's property paths are behind Details.
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

import microsoft_teams.cards as ac

from provisioning.models import Actor, Change, Plan, PlannedStep, StepAction

from .actions import Verb, action_data
from .common import breakable, environment_label, finish, heading, text, title, utc

BADGES = {
    StepAction.CREATE: ("Create", "Good"),
    StepAction.UPDATE: ("Update", "Warning"),
    StepAction.NO_CHANGE: ("No change", None),
    StepAction.MANUAL: ("You do this by hand", "Accent"),
    StepAction.DELETE: ("Delete", "Attention"),
}
STATES = {
    "pending": None,
    "approved": "Approved: the setup is running.",
    "cancelled": "Cancelled: nothing was changed.",
    "stale": "Not applied: the tenant changed after this plan was made. Review the new plan.",
    "refused": "Refused.",
}
DETAILS_ID = "plan-details"

# The property paths the steps' `decide` writes (provisioning/steps/*), as the Entra admin center labels them.
LABELS = {
    "displayName": "Name",
    "signInAudience": "Who can sign in",
    "web.redirectUris": "Redirect URIs",
    "web.implicitGrantSettings.enableAccessTokenIssuance": "Access tokens (implicit grant)",
    "web.implicitGrantSettings.enableIdTokenIssuance": "ID tokens (implicit grant)",
    "requiredResourceAccess (Microsoft Graph)": "Microsoft Graph permissions",
    "passwordCredential.endDateTime": "Client secret expires",
    "published authentication": "Published authentication",
    "servicePrincipal.appId": "Service principal for",
    "federatedIdentityCredential.name": "Federated credential name",
    "federatedIdentityCredential.issuer": "Issuer",
    "federatedIdentityCredential.subject": "Subject",
    "federatedIdentityCredential.audiences": "Audiences",
}
# signInAudience values, as "Supported account types" in the Entra admin center words them
AUDIENCES = {
    "AzureADMyOrg": "Accounts in this organization only",
    "AzureADMultipleOrgs": "Accounts in any organization",
    "AzureADandPersonalMicrosoftAccount": "Accounts in any organization and personal Microsoft accounts",
    "PersonalMicrosoftAccount": "Personal Microsoft accounts only",
}
# lastPublishedDetails.authenticationMode, as Copilot Studio's Security → Authentication page names the choices
AUTH_MODES = {
    "Unspecified": "not set",
    "None": "No authentication",
    "Integrated": "Authenticate with Microsoft",
    "CustomAzureActiveDirectory": "Authenticate manually (Microsoft Entra ID)",
    "GenericOAuth2": "Authenticate manually (generic OAuth 2)",
}
_IN_DAYS = re.compile(r"^now \+ (\d+) days?$")


def label(path: str) -> str:
    """A property path in words; an unknown path becomes its last segment, spaced ("logoutUrl" → "Logout url")."""
    if path in LABELS:
        return LABELS[path]
    last = path.rsplit(".", 1)[-1]
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", last).lower()
    return words[:1].upper() + words[1:]


def shown(path: str, value: Any) -> list[str]:
    """A value as lines for people: On/Off, "not set", one line per list item, Entra's and Copilot Studio's words."""
    if value is None:
        return ["not set"]
    if isinstance(value, bool):
        return ["On" if value else "Off"]
    if isinstance(value, (list, tuple)):
        return [line for item in value for line in shown(path, item)] or ["none"]
    if isinstance(value, dict):
        return [json.dumps(value, ensure_ascii=False)]
    raw = str(value)
    if path == "signInAudience":
        return [AUDIENCES.get(raw, raw)]
    if path == "published authentication":
        return [AUTH_MODES.get(raw, raw)]
    if path.endswith("endDateTime"):
        days = _IN_DAYS.match(raw)
        return [f"{days.group(1)} days after it is made" if days else utc(raw)]
    return [raw]


def verbatim(value: str, *, subtle: bool = False) -> ac.RichTextBlock:
    """A value exactly as it is (a TextRun is never read as Markdown), wrapping where a URL may break."""
    return ac.RichTextBlock(inlines=[ac.TextRun(text=breakable(value), is_subtle=subtle or None)], spacing="None")


def change_lines(change: Change) -> list[Any]:
    """One change as a label line and then its values, before → after marked, each value wrapped on its own line."""
    name = label(change.field)
    after = shown(change.field, change.after)
    lists = isinstance(change.after, (list, tuple)) or isinstance(change.before, (list, tuple))
    if change.before is None:
        if len(after) == 1 and not lists:
            return [_pair(name, after[0])]
        return [heading(name), *(verbatim(f"• {v}") for v in after)]
    if lists:
        new = after if change.after else []
        old = shown(change.field, change.before)
        lines: list[Any] = [heading(name)]
        lines += [verbatim(f"{'Keep' if v in old else 'Add'}: {v}") for v in new]
        lines += [verbatim(f"Remove: {v}") for v in old if v not in new]
        return lines
    return [heading(name), verbatim(f"Now: {shown(change.field, change.before)[0]}", subtle=True), verbatim(f"After: {after[0]}")]


def _pair(name: str, value: str) -> ac.RichTextBlock:
    return ac.RichTextBlock(inlines=[ac.TextRun(text=f"{name}: ", weight="Bolder"), ac.TextRun(text=breakable(value))])


def step_items(step: PlannedStep) -> list[Any]:
    if step.skip_reason:
        return [text(f"{step.step.label}: skipped — {step.skip_reason}", subtle=True)]
    badge, color = BADGES[step.action]
    items: list[Any] = [ac.TextBlock(text=f"{badge}: {step.step.label}", weight="Bolder", color=color, wrap=True), text(step.summary)]
    for change in step.changes:
        items.extend(change_lines(change))
    items.extend(text(n, subtle=True) for n in step.notes)
    return items


def details(steps: Sequence[PlannedStep]) -> list[Any]:
    """Graph's own property paths and values, for whoever wants to check them against Graph Explorer; hidden at first."""
    items: list[Any] = [text("Microsoft Graph and Dataverse properties", weight="Bolder")]
    for step in steps:
        if step.skip_reason or not step.changes:
            continue
        items.append(text(step.step.label, subtle=True))
        for change in step.changes:
            items.append(ac.RichTextBlock(spacing="None", inlines=[
                ac.TextRun(text=breakable(change.field), font_type="Monospace", weight="Bolder", size="Small"), ac.TextRun(text=": "),
                ac.TextRun(text=breakable(f"{_raw(change.before)} → {_raw(change.after)}"), font_type="Monospace", size="Small"),
            ]))
    if len(items) == 1:
        return []
    return [
        ac.ActionSet(actions=[ac.ToggleVisibilityAction(title="Details", target_elements=[DETAILS_ID])]),
        ac.Container(id=DETAILS_ID, is_visible=False, items=items, spacing="None"),
    ]


def _raw(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(", ", ": "))


def plan_title(plan: Plan, retry_of: str | None = None) -> str:
    name, request = plan.agent.name, plan.request
    if retry_of is not None:
        return f"New plan for retrying '{name}'"
    if request.purpose == "rotate":
        return f"Plan: rotate the client secret of '{name}'" if request.credential == "client_secret" else \
            f"Plan: switch '{name}' to a federated credential"
    return {"repair": f"Plan: put the setup of '{name}' back as approved", "remove": f"Plan: remove the setup of '{name}'"}.get(
        request.purpose, f"Plan for '{name}'")


def plan_card(card_id: str, plan: Plan, *, requested_by: Actor, approvers: str, state: str = "pending", note: str | None = None,
              open_access: bool = False, retry_of: str | None = None, change_of: str | None = None) -> dict[str, Any]:
    """`open_access`: the bot runs with ALLOW_ANYONE=true; the card says so next to Approve. `retry_of`: the failed job
    whose retry found the tenant changed since its approval; approving this plan lets it run again. `change_of`: the
    job that set the agent up, for a day-two change (rotation, switch, put back, removal)."""
    body: list[Any] = [
        title(plan_title(plan, retry_of)),
        text(f"Environment: {environment_label(plan.agent)}. Requested by {requested_by.name or requested_by.id}. "
             f"Plan {plan.hash[:12]}, made {utc(plan.created_at)}.", subtle=True),
    ]
    for step in plan.steps:
        body.append(ac.Container(items=step_items(step), separator=True, spacing="Medium"))
    body.extend(details(plan.steps))
    if retry_of is not None:
        body.insert(2, text("The tenant changed since this setup was approved, so the retry was not applied. This is what it would "
                            "change now; it needs approval again.", color="Warning"))
    for check in plan.preflight.checks:
        if check.advice:
            body.append(text(f"{check.message} {check.remedy}".strip(), color="Warning"))
    if STATES.get(state):
        said = STATES[state] or ""
        if plan.request.purpose != "setup":
            said = said.replace("the setup is running", "the change is running")
        body.append(ac.TextBlock(text=said, weight="Bolder", wrap=True, color="Attention" if state in ("stale", "refused") else "Good"))
    if note:
        body.append(text(note))
    actions: list[Any] = []
    if state == "pending":
        if open_access:
            body.append(text("Open access (ALLOW_ANYONE=true): anyone in the allowed tenants may request and approve this setup.",
                             color="Attention", weight="Bolder"))
        body.append(text(f"Who may approve: {approvers}", subtle=True))
        if retry_of is not None:
            actions = [ac.SubmitAction(title="Approve", data=action_data(Verb.RETRY_APPROVE, card_id, retry_of, plan_hash=plan.hash),
                                       associated_inputs="none")]
        elif change_of is not None:
            actions = [
                ac.SubmitAction(title="Approve", data=action_data(Verb.CHANGE_APPROVE, card_id, change_of, plan_hash=plan.hash), associated_inputs="none"),
                ac.SubmitAction(title="Cancel", data=action_data(Verb.CHANGE_CANCEL, card_id, change_of), associated_inputs="none"),
            ]
        else:
            actions = [
                ac.SubmitAction(title="Approve", data=action_data(Verb.PLAN_APPROVE, card_id, plan_hash=plan.hash), associated_inputs="none"),
                ac.SubmitAction(title="Cancel", data=action_data(Verb.PLAN_CANCEL, card_id), associated_inputs="none"),
            ]
    return finish(body, actions)
