"""One agent's setup as day two sees it, and the changes day two offers (front ends build their buttons from these)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .models import JobStatus

ROTATE_SECRET, SWITCH_TO_FEDERATED, PUT_BACK, REMOVE_SETUP = "rotate", "federated", "repair", "remove"
CHANGES = (ROTATE_SECRET, SWITCH_TO_FEDERATED, PUT_BACK, REMOVE_SETUP)
# a job in one of these is changing the tenant: the watch leaves its setup alone until it ends (what it sees meanwhile
# is half of a change, not drift)
CHANGING = (JobStatus.QUEUED.value, JobStatus.RUNNING.value, JobStatus.WAITING_FOR_OPERATOR.value, JobStatus.PROPAGATING.value,
            JobStatus.CANCELLING.value)


@dataclass(frozen=True)
class SetupView:
    """One agent's setup as day two sees it."""

    subject: str
    job_id: str  # the job that last set it up (its conversation gets the notices)
    status: str  # "active" or "removed"
    agent_name: str
    environment_name: str
    credential: str
    client_id: str
    secret_expires: str  # "" for a federated credential
    conversation: str
    last_check_at: float | None
    last_result: str
    findings: tuple[dict[str, Any], ...]
    open_job: str = ""  # a change to this setup that has not finished ("" when none)
    open_job_purpose: str = ""

    @property
    def healthy(self) -> bool:
        return self.status == "active" and not self.findings
