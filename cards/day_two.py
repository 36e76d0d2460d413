"""Day-two cards: a client secret about to expire, a setup that drifted, and each setup's health on the status card.
Their buttons plan a change (shown for approval like a setup), keep a change, or check again now."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import microsoft_teams.cards as ac

from provisioning.setups import PUT_BACK, REMOVE_SETUP, ROTATE_SECRET, SWITCH_TO_FEDERATED, SetupView

from .actions import CHECK, KEEP, Verb, action_data
from .common import breakable, finish, heading, text, title, utc

CREDENTIAL_WORDS = {"client_secret": "client secret", "federated": "federated credential (no secret)"}


def _button(label: str, card_id: str, job_id: str, change: str) -> ac.SubmitAction:
    return ac.SubmitAction(title=label, data=action_data(Verb.CHANGE_PLAN, card_id, job_id, change=change), associated_inputs="none")


def expiry_card(card_id: str, job_id: str, *, agent_name: str, message: str, threshold: int, expires: str, client_id: str) -> dict[str, Any]:
    """The watch found the client secret expires within `threshold` days (0: it has expired)."""
    color = "Attention" if threshold <= 7 else "Warning"
    body: list[Any] = [
        title(f"Client secret of '{agent_name}' {'has expired' if threshold == 0 else 'expires soon'}"),
        text(message, color=color, weight="Bolder"),
        text(f"It expires {utc(expires)} (by Microsoft Entra's clock). Client ID {client_id}.", subtle=True),
        text("Rotate it: I make a new secret next to the old one, you paste it in Copilot Studio, I check and publish, and only then "
             "remove the old one, so sign-in never breaks. Or switch to a federated credential, which has no secret to expire."),
    ]
    return finish(body, [_button("Rotate the secret", card_id, job_id, ROTATE_SECRET),
                         _button("Switch to a federated credential", card_id, job_id, SWITCH_TO_FEDERATED)])


def drift_card(card_id: str, job_id: str, *, agent_name: str, findings: Sequence[Mapping[str, Any]], noticed_at: str) -> dict[str, Any]:
    """What changed since the setup was approved, each from the approved value to what the tenant shows now."""
    body: list[Any] = [
        title(f"The setup of '{agent_name}' changed"),
        text(f"Noticed {utc(noticed_at)}. This is not how it was approved:", subtle=True),
    ]
    for finding in findings:
        items: list[Any] = [heading(str(finding.get("what", ""))), text(breakable(str(finding.get("summary", ""))), spacing="None")]
        for change in finding.get("changes") or ():
            items.append(text(breakable(f"{change['field']}: approved {change['approved']}; now {change['now']}"), spacing="None"))
        for note in finding.get("notes") or ():
            items.append(text(breakable(str(note)), subtle=True, spacing="None"))
        body.append(ac.Container(items=items, separator=True))
    body.append(text("Put it back plans the changes that restore the approved setup, for approval. Keep the change records the tenant "
                     "as it is now as approved (an approver's choice, audited).", subtle=True))
    return finish(body, [_button("Put it back", card_id, job_id, PUT_BACK), _button("Keep the change", card_id, job_id, KEEP)])


def resolved_card(agent_name: str) -> dict[str, Any]:
    return finish([title(f"The setup of '{agent_name}' is as approved again"),
                   text("The last check found nothing changed since approval.", color="Good")])


def setup_items(card_id: str, setups: Sequence[SetupView], *, buttons: bool = True) -> list[Any]:
    """Each setup's health for the status card: credential and expiry, last check and result, open drift, pending change."""
    items: list[Any] = [heading("Agents set up")]
    for s in setups:
        state = "removed" if s.status == "removed" else ("as approved" if s.healthy else "changed since approval")
        lines = [f"Credential: {CREDENTIAL_WORDS.get(s.credential, s.credential)}"
                 + (f", expires {utc(s.secret_expires)}" if s.secret_expires and s.status == "active" else "") + "."]
        lines.append(f"Last check: {utc(s.last_check_at)}: {s.last_result}" if s.last_check_at else "Not checked yet.")
        if s.findings:
            lines.append("Open drift: " + "; ".join(str(f.get("what", "")) for f in s.findings) + ".")
        if s.open_job:
            lines.append(f"A change is in progress ({_purpose(s.open_job_purpose)}, job {s.open_job[:8]}).")
        block: list[Any] = [
            ac.TextBlock(text=f"{s.agent_name}: {state}", weight="Bolder", wrap=True, color=None if s.healthy or s.status == "removed" else "Warning"),
            text(" ".join(lines), subtle=True, spacing="Small"),
        ]
        if buttons and s.status == "active" and not s.open_job:
            actions = [_button("Check now", card_id, s.job_id, CHECK)]
            if s.credential == "client_secret":
                actions.append(_button("Rotate the secret", card_id, s.job_id, ROTATE_SECRET))
            if s.findings:
                actions.append(_button("Put it back", card_id, s.job_id, PUT_BACK))
            actions.append(_button("Remove", card_id, s.job_id, REMOVE_SETUP))
            block.append(ac.ActionSet(actions=actions))
        items.append(ac.Container(items=block, separator=True))
    return items


def _purpose(purpose: str) -> str:
    return {"rotate": "credential change", "repair": "putting it back", "remove": "removal"}.get(purpose, "setup")


def choose_removal_card(card_id: str, setups: Sequence[SetupView]) -> dict[str, Any]:
    """`remove copilot` where several agents were set up: which one."""
    body: list[Any] = [title("Remove which setup?"),
                       text("I plan the removal of what I made for that agent, and show it for approval first.", subtle=True)]
    for s in setups:
        body.append(ac.Container(items=[heading(s.agent_name), text(f"{s.environment_name}. Client ID {s.client_id}.", subtle=True, spacing="None"),
                                        ac.ActionSet(actions=[_button("Plan the removal", card_id, s.job_id, REMOVE_SETUP)])], separator=True))
    return finish(body)
