"""Between the store's rows and the service's models: a job as the service reads it, its view for front ends, events,
and short constructors for the events and audit entries a `JobChange` carries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

from store import JobSnapshot, NewAudit, NewEvent, Row

from .models import (
    Actor,
    AgentSummary,
    Event,
    EventKind,
    GuidedInstructions,
    JobStatus,
    JobView,
    SetupRequest,
    StepName,
    StepStatus,
    StepView,
)

SERVICE: dict[str, str] = {"id": "provisioning-service"}
ACTIVE = (JobStatus.QUEUED.value, JobStatus.RUNNING.value)  # a worker may write steps
OPEN = tuple(s.value for s in JobStatus if not s.terminal)


def ts(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, timezone.utc) if value else None


def event(kind: EventKind, *, step: StepName | str | None = None, message: str = "", data: Mapping[str, Any] | None = None) -> NewEvent:
    name = step.value if isinstance(step, StepName) else step
    return NewEvent(kind.value, name, message, dict(data or {}))


def audit(actor: Actor | Mapping[str, Any], action: str, **detail: Any) -> NewAudit:
    who = actor.to_dict() if isinstance(actor, Actor) else dict(actor)
    return NewAudit(who, action, detail)


@dataclass
class JobRecord:
    """A job as the service reads it: the approved plan, its durable data, who asked and approved, its steps."""

    id: str
    status: JobStatus
    plan: dict[str, Any]
    data: dict[str, Any]
    requested_by: Actor
    approved_by: Actor
    tags: dict[str, str]
    created_at: float
    updated_at: float
    version: int
    steps: list[Row]
    vault: Row | None
    kind: str = "setup"
    subject: str = ""

    @classmethod
    def of(cls, snap: JobSnapshot) -> "JobRecord":
        j = snap.job
        return cls(id=j["id"], status=JobStatus(j["status"]), plan=j["plan"], data=j["data"],
                   requested_by=Actor.from_dict(j["requested_by"]), approved_by=Actor.from_dict(j["approved_by"]), tags=j["tags"],
                   created_at=j["created_at"], updated_at=j["updated_at"], version=snap.version, steps=snap.steps, vault=snap.vault,
                   kind=j.get("kind") or "setup", subject=j.get("subject") or "")

    @property
    def request(self) -> SetupRequest:
        return SetupRequest.from_dict(self.plan["request"])

    @property
    def agent(self) -> AgentSummary:
        return AgentSummary(**self.plan["agent"])

    def step_status(self, name: StepName) -> StepStatus | None:
        row = next((s for s in self.steps if s["name"] == name.value), None)
        return StepStatus(row["status"]) if row else None

    def step_row(self, name: StepName) -> Row | None:
        return next((s for s in self.steps if s["name"] == name.value), None)

    @property
    def actors(self) -> tuple[str, str]:
        return self.requested_by.id, self.approved_by.id


def instructions_of(raw: Mapping[str, Any]) -> GuidedInstructions:
    return GuidedInstructions(
        title=raw["title"], steps=tuple(raw["steps"]), values=tuple(tuple(v) for v in raw["values"]),
        links=tuple(tuple(v) for v in raw["links"]), secret_handoff=raw["secret_handoff"],
        inputs=tuple(tuple(v) for v in raw.get("inputs", ())), previous=tuple(raw.get("previous", ())),
    )


def view(job: JobRecord) -> JobView:
    steps = []
    for r in job.steps:
        status = StepStatus(r["status"])
        instructions = instructions_of(r["instructions"]) if r["instructions"] and status == StepStatus.WAITING_FOR_OPERATOR else None
        steps.append(StepView(step=StepName(r["name"]), status=status, message=r["message"], attempts=r["attempts"],
                              instructions=instructions, verification=r["verification"], outputs=r["outputs"], due_at=ts(r["due_at"])))
    now = datetime.now(timezone.utc)
    return JobView(
        id=job.id, status=job.status, plan_hash=job.plan["hash"], request=job.request, agent=job.agent, steps=tuple(steps),
        requested_by=job.requested_by, approved_by=job.approved_by, created_at=ts(job.created_at) or now,
        updated_at=ts(job.updated_at) or now, secret_available=job.vault is not None, tags=job.tags,
        secret_shown=bool(job.vault and job.vault.get("shown_at")), handoff_expires_at=ts(job.vault["expires_at"]) if job.vault else None,
    )


def event_of(row: Row) -> Event:
    return Event(seq=row["seq"], job_id=row["job_id"], kind=EventKind(row["kind"]), at=ts(row["at"]) or datetime.now(timezone.utc),
                 step=StepName(row["step"]) if row["step"] else None, message=row["message"], data=row["data"])
