"""The housekeeping one instance does at a time (lease "sweeper"): secrets nobody took in time, and the durable
queue of credentials to remove from app registrations, each tried again with backoff until Graph confirms it is
gone (204, or 404 for one already gone). Nothing is left that nobody holds without the queue saying so."""

from __future__ import annotations

import logging
import time
from typing import Any

from store import JobChange, Row

from .core import Core
from .errors import MicrosoftApiError
from .handoff import Handoff
from .journal import SERVICE, audit, event
from .models import EventKind

log = logging.getLogger(__name__)
KINDS = {"password": "client secret", "federated": "federated credential", "application": "app registration"}


def describe(removal: Row) -> str:
    what = KINDS.get(str(removal["kind"]), str(removal["kind"]))
    if removal["kind"] == "password":
        what += f" {str(removal['key_id'])[:8]}…"
    return f"the {what} ({removal['reason']})"


class Sweeper:
    def __init__(self, core: Core, handoff: Handoff) -> None:
        self.core = core
        self.handoff = handoff

    async def sweep(self) -> None:
        now = time.time()
        for row in await self.core.store.vault.expired(now):
            await self.handoff.expire(str(row["job_id"]), str(row["key_id"]))
        for removal in await self.core.store.removals.due(now):
            await self.remove(removal)

    async def remove_for(self, job_id: str) -> None:
        """Try a job's pending removals now (a cancel or a renewal wants them gone at once; the sweep retries)."""
        for removal in await self.core.store.removals.for_job(job_id):
            if removal["done_at"] is None:
                await self.remove(removal)

    async def remove(self, removal: Row) -> bool:
        graph, object_id, key_id = self.core.graph, str(removal["object_id"]), str(removal["key_id"])
        try:
            if removal["kind"] == "password":
                await graph.remove_password(object_id, key_id)
            elif removal["kind"] == "federated":
                await graph.delete_federated_credential(object_id, key_id)
            elif removal["kind"] == "application":
                await graph.delete_application(object_id)
        except MicrosoftApiError as exc:
            retry_in = min(3600.0, 15.0 * 2 ** int(removal["attempts"]))
            log.warning("could not remove %s of job %s yet (%s %s, request id %s); trying again in %.0f s",
                        describe(removal), removal["job_id"], exc.status, exc.code, exc.request_id or "-", retry_in)
            await self.core.store.removals.failed(int(removal["id"]), f"{exc.status} {exc.code}: {exc.ms_message or exc.message}", retry_in)
            return False
        await self.core.store.removals.done(int(removal["id"]))
        what = describe(removal)
        details: dict[str, Any] = {"kind": removal["kind"], "key_id": key_id, "object_id": object_id}
        await self.core.apply(JobChange(str(removal["job_id"]), events=[event(EventKind.CREDENTIAL_REMOVED, message=f"Removed {what}.", data=details)],
                                        audit=[audit(SERVICE, "credential_removed", **details)]))
        return True
