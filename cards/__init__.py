"""Every Adaptive Card the bot sends: pure functions from data to card JSON (Adaptive Cards 1.5)."""

from __future__ import annotations

from typing import Any

from botbuilder.schema import Attachment

from .conversation import help_card, notice_card, status_card, welcome_card
from .outcome import completion_card, reminder_card, secret_card, secret_refused_card
from .plan import plan_card
from .progress import guided_step_card, progress_card
from .setup_form import agent_choice_card, agent_value, details_card

CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"


def as_attachment(card: dict[str, Any]) -> Attachment:
    return Attachment(content_type=CONTENT_TYPE, content=card)


__all__ = [
    "as_attachment", "welcome_card", "help_card", "notice_card", "status_card", "agent_choice_card", "agent_value",
    "details_card", "plan_card", "progress_card", "guided_step_card", "secret_card", "secret_refused_card",
    "reminder_card", "completion_card", "CONTENT_TYPE",
]
