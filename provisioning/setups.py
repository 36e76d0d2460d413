"""One agent's setup as day two sees it, and the changes day two offers (front ends build their buttons from these)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ROTATE_SECRET, SWITCH_TO_FEDERATED, PUT_BACK, REMOVE_SETUP = "rotate", "federated", "repair", "remove"
CHANGES = (ROTATE_SECRET, SWITCH_TO_FEDERATED, PUT_BACK, REMOVE_SETUP)


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
