"""Where each job lives in Teams: its conversation reference and the ids of the cards that show it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

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
    delivered_seq: int = 0  # the last event whose cards were delivered (the notifier's cursor for this job)
    progress_seq: int = 0  # the last event the progress card shows
    dead_letters: list[dict[str, Any]] = field(default_factory=list)  # cards Teams refused for good (403/404)
    created_at: float = 0.0
    retry_plan: dict[str, Any] = field(default_factory=dict)  # a retry's new plan awaiting approval: card id, hash, activity
    notice_cards: list[str] = field(default_factory=list)  # day two: cards whose buttons count for this setup (expiry, drift, status)
    proposals: dict[str, dict[str, Any]] = field(default_factory=dict)  # day two: plan card id → the plan awaiting approval

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
        """Write the whole record (only for a record nobody else can be changing yet: a new job's)."""
        await self.storage.write({self._key(record.job_id): asdict(record) | {"e_tag": "*"}})

    async def update(self, job_id: str, change: Callable[[JobConversation], None]) -> JobConversation | None:
        """Apply `change` to the stored record and write it back only if nobody wrote it in between (etag); on a
        conflict read it again and re-apply. The turn that starts a job and the notifier both change records."""
        key = self._key(job_id)
        for _ in range(20):
            doc = (await self.storage.read([key])).get(key)
            if not isinstance(doc, dict):
                return None
            record = JobConversation(**{k: v for k, v in doc.items() if k != "e_tag"})
            change(record)
            try:
                await self.storage.write({key: asdict(record) | {"e_tag": doc.get("e_tag") or "*"}})
            except KeyError:  # etag conflict: someone else saved it first
                continue
            return record
        raise RuntimeError(f"could not update the Teams record of job {job_id}: it keeps changing")
