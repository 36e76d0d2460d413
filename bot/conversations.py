"""Where each job lives in Teams: its conversation reference and the ids of the cards that show it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from botbuilder.core import Storage

from provisioning.models import Actor


@dataclass
class JobConversation:
    job_id: str
    conversation_id: str
    reference: dict[str, Any]
    tenant_id: str
    requester: dict[str, str]
    progress_activity_id: str = ""
    progress_card_id: str = ""
    guided: dict[str, list[str]] = field(default_factory=dict)  # step → [activity id, card id]
    reminder_activity_id: str = ""
    completed: bool = False
    reminded: bool = False
    requester_account: str = ""  # the requester's Teams id ("29:…"), for the @mention on completion

    @property
    def requester_actor(self) -> Actor:
        return Actor.from_dict(self.requester)


class ConversationStore:
    def __init__(self, storage: Storage) -> None:
        self.storage = storage

    @staticmethod
    def _key(job_id: str) -> str:
        return f"jobs/{job_id}"

    async def get(self, job_id: str) -> JobConversation | None:
        found = await self.storage.read([self._key(job_id)])
        doc = found.get(self._key(job_id))
        if not isinstance(doc, dict):
            return None
        return JobConversation(**{k: v for k, v in doc.items() if k != "e_tag"})

    async def save(self, record: JobConversation) -> None:
        await self.storage.write({self._key(record.job_id): asdict(record) | {"e_tag": "*"}})
