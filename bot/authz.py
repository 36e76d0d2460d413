"""Who may do what, checked on the server for every message and every card click."""

from __future__ import annotations

from botbuilder.schema import Activity

from provisioning.models import Actor

from .config import BotSettings


def tenant_of(activity: Activity) -> str | None:
    data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    tenant = (data.get("tenant") or {}).get("id") if isinstance(data.get("tenant"), dict) else None
    if not tenant and activity.conversation is not None:
        tenant = getattr(activity.conversation, "tenant_id", None) or (activity.conversation.additional_properties or {}).get("tenantId")
    return str(tenant).lower() if tenant else None


def actor_from(activity: Activity) -> Actor:
    sender = activity.from_property
    aad = (getattr(sender, "aad_object_id", None) or "") if sender else ""
    return Actor(id=str(aad).lower(), name=(sender.name or "") if sender else "")


class AccessPolicy:
    def __init__(self, settings: BotSettings) -> None:
        self.settings = settings

    def tenant_allowed(self, tenant_id: str | None) -> bool:
        allowed = self.settings.allowed_tenant_ids
        return not allowed or (tenant_id or "").lower() in allowed

    def may_request(self, aad_object_id: str | None) -> bool:
        if not aad_object_id:
            return False
        allowed = self.settings.setup_requesters
        return not allowed or aad_object_id.lower() in allowed

    def may_approve(self, aad_object_id: str | None, *, requested_by: str) -> bool:
        if not aad_object_id:
            return False
        who = aad_object_id.lower()
        if self.settings.require_second_approver and who == requested_by.lower():
            return False
        approvers = self.settings.setup_approvers
        return who in approvers if approvers else True

    def may_operate(self, aad_object_id: str | None, *, requested_by: str, approved_by: str) -> bool:
        """Confirm guided steps, retry or cancel a job: its requester, its approver, or any approver."""
        if not aad_object_id:
            return False
        who = aad_object_id.lower()
        return who in (requested_by.lower(), approved_by.lower()) or who in self.settings.setup_approvers

    @property
    def open_access(self) -> bool:
        """ALLOW_ANYONE=true: the operator opened the bot to anyone it answers (plan cards say so)."""
        return self.settings.allow_anyone

    def approval_refusal(self, aad_object_id: str | None, *, requested_by: str) -> str:
        """Why `may_approve` said no, in words for the person who clicked."""
        if not aad_object_id:
            return "Your message has no Microsoft Entra user id, so I can't check whether you may approve."
        if self.settings.require_second_approver and aad_object_id.lower() == requested_by.lower():
            return "You requested this setup, and a second person must approve it (REQUIRE_SECOND_APPROVER)."
        return "You are not one of the approvers for setups (SETUP_APPROVERS). Ask one of them to approve."

    def approvers_text(self, requested_by: Actor) -> str:
        if self.settings.setup_approvers:
            text = f"{len(self.settings.setup_approvers)} configured approver(s) (SETUP_APPROVERS)"
        else:
            text = "anyone in this conversation (SETUP_APPROVERS is empty)"
        if self.settings.require_second_approver:
            text += f", not {requested_by.name or 'the requester'} (a second person must approve)"
        return text
