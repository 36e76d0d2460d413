"""Every Adaptive Card the bot sends: pure functions from data to card JSON (Adaptive Cards 1.5).

The card functions are loaded on first use (PEP 562): the Adaptive Card models (microsoft-teams-cards, built on
pydantic) take about a quarter of a second to import, which the bot does in the background once it is listening
(see app.py) instead of before it can answer at all.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from botbuilder.schema import Attachment

if TYPE_CHECKING:
    from .conversation import help_card, notice_card, status_card, welcome_card
    from .day_two import choose_removal_card, drift_card, expiry_card, resolved_card
    from .guided import guided_step_card, secret_card, secret_refused_card
    from .outcome import completion_card, reminder_card
    from .plan import plan_card
    from .progress import progress_card
    from .setup_form import agent_choice_card, agent_value, details_card

CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
_HOME = {
    "help_card": "conversation", "notice_card": "conversation", "status_card": "conversation", "welcome_card": "conversation",
    "completion_card": "outcome", "reminder_card": "outcome", "secret_card": "guided", "secret_refused_card": "guided",
    "plan_card": "plan", "guided_step_card": "guided", "progress_card": "progress",
    "expiry_card": "day_two", "drift_card": "day_two", "resolved_card": "day_two", "choose_removal_card": "day_two",
    "agent_choice_card": "setup_form", "agent_value": "setup_form", "details_card": "setup_form",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'cards' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def load_all() -> None:
    """Import every card module now (the bot's warm-up does this off the event loop)."""
    for name in _HOME:
        __getattr__(name)


def as_attachment(card: dict[str, Any]) -> Attachment:
    return Attachment(content_type=CONTENT_TYPE, content=card)


__all__ = [
    "as_attachment", "welcome_card", "help_card", "notice_card", "status_card", "agent_choice_card", "agent_value",
    "details_card", "plan_card", "progress_card", "guided_step_card", "secret_card", "secret_refused_card",
    "reminder_card", "completion_card", "expiry_card", "drift_card", "resolved_card", "choose_removal_card", "CONTENT_TYPE", "load_all",
]
