"""Every refusal is audited: who tried what, on which job or card, and why — an audit row and an INFO log line (never
a secret) — and the person sees a notice saying what to do instead."""

from __future__ import annotations

import logging
from typing import Any

from botbuilder.core import MessageFactory, TurnContext

import cards
from provisioning import ProvisioningService
from provisioning.models import Actor

log = logging.getLogger(__name__)


async def record(service: ProvisioningService, who: Actor, action: str, why: str, *, job_id: str | None = None, card_id: str = "",
                 conversation: str = "") -> None:
    log.info("refused %s by %s (job %s, card %s): %s", action, who.id or "unknown", job_id or "-", card_id or "-", why)
    detail: dict[str, Any] = {"card": card_id, "conversation": conversation, "who_name": who.name}
    await service.record_refusal(who, action, job_id=job_id or None, why=why, **detail)


async def refuse(service: ProvisioningService, turn_context: TurnContext, who: Actor, action: str, heading: str, why: str, *,
                 job_id: str | None = None, card_id: str = "", style: str = "warning") -> None:
    """Audit the refusal, then tell the person in the conversation."""
    conversation = turn_context.activity.conversation.id if turn_context.activity.conversation else ""
    await record(service, who, action, why, job_id=job_id, card_id=card_id, conversation=conversation)
    await turn_context.send_activity(MessageFactory.attachment(cards.as_attachment(cards.notice_card(heading, why, style=style))))
