"""The data every card button submits, shared by `cards/` (which builds it) and `bot/` (which checks it).

Every action's `data` carries:
    action: one of the verbs below
    card:   the id of the card it came from (a random nonce the bot stores as "current"); a click on a card
            that is no longer current, or that was never issued, changes nothing
    job:    the provisioning job id, when the card belongs to a job ("" while the dialog collects input)
plus the card's input values (Adaptive Cards merges them into `value` for Action.Submit, and into
`action.data` for Action.Execute).
"""

from __future__ import annotations

from typing import Final

__all__ = ["Verb", "ACTION", "CARD", "JOB", "STEP", "KEEP", "CHECK", "action_data"]

ACTION: Final = "action"
CARD: Final = "card"
JOB: Final = "job"
STEP: Final = "step"


class Verb:
    """Card verbs. Grouped by the card that carries them."""

    # agent choice and details cards (dialog input)
    FORM_SUBMIT: Final = "setup.submit"
    FORM_CANCEL: Final = "setup.cancel"
    # plan card
    PLAN_APPROVE: Final = "plan.approve"
    PLAN_CANCEL: Final = "plan.cancel"
    # progress and guided-step cards
    STEP_DONE: Final = "step.done"
    STEP_OVERRIDE: Final = "step.override"
    STEP_SANDBOX: Final = "step.sandbox"
    JOB_RETRY: Final = "job.retry"
    JOB_CANCEL: Final = "job.cancel"
    # one-time client secret hand-off (Action.Execute → a card only the clicker sees; or task/fetch in Teams)
    SECRET_REVEAL: Final = "secret.reveal"
    SECRET_RENEW: Final = "secret.renew"
    SECRET_COPIED: Final = "secret.copied"
    # federated credential: the issuer and value Copilot Studio shows, pasted into the card
    FEDERATED_SUBMIT: Final = "federated.submit"
    # secured access: keep an earlier confirmation for the same agent
    STEP_KEEP: Final = "step.keep"
    # a retry whose plan changed: approve the new plan
    RETRY_APPROVE: Final = "retry.approve"
    # day two: a change from an expiry, drift or status card (`change`: rotate, federated, repair, remove, keep, check),
    # then the approval of its plan
    CHANGE_PLAN: Final = "change.plan"
    CHANGE_APPROVE: Final = "change.approve"
    CHANGE_CANCEL: Final = "change.cancel"
    # welcome / help cards
    START_SETUP: Final = "setup.start"
    SHOW_STATUS: Final = "status.show"


# day-two buttons besides the changes provisioning plans (provisioning/setups.py): keep a change, check now
KEEP: Final = "keep"
CHECK: Final = "check"


def action_data(verb: str, card_id: str, job_id: str = "", **extra: str) -> dict[str, str]:
    """The `data` object for a card action."""
    data = {ACTION: verb, CARD: card_id, JOB: job_id}
    data.update(extra)
    return data
