"""Typed data that crosses the provisioning service's boundary.

Front ends (the Teams bot, the command line) build a `SetupRequest`, get a `Plan` back, approve it,
and then watch a `JobView` change through `Event`s. Nothing here knows about Teams or HTTP.
All models are plain dataclasses with `to_dict()` / `from_dict()` so they can be journalled as JSON.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

__all__ = [
    "DEFAULT_REDIRECT_URIS",
    "SIGN_IN_AUDIENCES",
    "StepName",
    "StepAction",
    "StepStatus",
    "JobStatus",
    "EventKind",
    "Actor",
    "AgentRef",
    "AgentSummary",
    "SetupRequest",
    "Change",
    "PlannedStep",
    "PreflightCheck",
    "PreflightReport",
    "Plan",
    "GuidedInstructions",
    "StepView",
    "JobView",
    "Event",
]

DEFAULT_REDIRECT_URIS: tuple[str, ...] = (
    "https://token.botframework.com/.auth/web/redirect",
    "https://europe.token.botframework.com/.auth/web/redirect",
)
SIGN_IN_AUDIENCES: tuple[str, ...] = ("AzureADMultipleOrgs", "AzureADMyOrg")
FEDERATED = "federated"  # Microsoft Entra ID V2 with federated credentials: no secret at all (Microsoft's recommendation)
CLIENT_SECRET = "client_secret"  # Microsoft Entra ID V2 with client secrets (the original procedure)
CREDENTIAL_KINDS: tuple[str, ...] = (FEDERATED, CLIENT_SECRET)
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
# What a job is for: the setup itself, or a day-two change to it
SETUP, ROTATE, REPAIR, REMOVE = "setup", "rotate", "repair", "remove"
PURPOSES: tuple[str, ...] = (SETUP, ROTATE, REPAIR, REMOVE)
DEFAULT_SECRET_LIFETIME_DAYS = 180


class StepName(str, enum.Enum):
    """The setup steps, in the order a job runs them."""

    APP_REGISTRATION = "app_registration"
    CLIENT_SECRET = "client_secret"
    FEDERATED_CREDENTIAL = "federated_credential"
    SERVICE_PRINCIPAL = "service_principal"
    COPILOT_AUTHENTICATION = "copilot_authentication"
    PUBLISH = "publish"
    RETIRE_CREDENTIAL = "retire_credential"
    SECURED_ACCESS = "secured_access"
    CUSTOMER_SERVICE_CONNECTION = "customer_service_connection"
    # removing a setup
    AGENT_AUTHENTICATION_OFF = "agent_authentication_off"
    CUSTOMER_SERVICE_DISCONNECT = "customer_service_disconnect"
    DELETE_APP_REGISTRATION = "delete_app_registration"

    @property
    def label(self) -> str:
        """The step's name as the Copilot Studio and Entra admin centers call it."""
        return _STEP_TITLES[self]

    @property
    def guided(self) -> bool:
        """True for steps Microsoft offers no API for: the operator does them, the service verifies."""
        return self in (
            StepName.FEDERATED_CREDENTIAL,
            StepName.COPILOT_AUTHENTICATION,
            StepName.SECURED_ACCESS,
            StepName.CUSTOMER_SERVICE_CONNECTION,
            StepName.AGENT_AUTHENTICATION_OFF,
            StepName.CUSTOMER_SERVICE_DISCONNECT,
        )


_STEP_TITLES = {
    StepName.APP_REGISTRATION: "Entra app registration",
    StepName.CLIENT_SECRET: "Client secret",
    StepName.FEDERATED_CREDENTIAL: "Federated credential",
    StepName.SERVICE_PRINCIPAL: "Service principal",
    StepName.COPILOT_AUTHENTICATION: "Copilot Studio: authenticate manually",
    StepName.PUBLISH: "Publish the agent",
    StepName.SECURED_ACCESS: "Web channel: require secured access",
    StepName.CUSTOMER_SERVICE_CONNECTION: "Connect to Dynamics 365 Customer Service",
    StepName.RETIRE_CREDENTIAL: "Remove the old credential",
    StepName.AGENT_AUTHENTICATION_OFF: "Copilot Studio: stop using this app registration",
    StepName.CUSTOMER_SERVICE_DISCONNECT: "Disconnect from Dynamics 365 Customer Service",
    StepName.DELETE_APP_REGISTRATION: "Delete the app registration",
}


class StepAction(str, enum.Enum):
    """What applying the plan will do to a step, like `terraform plan`."""

    CREATE = "create"
    UPDATE = "update"
    NO_CHANGE = "no_change"
    MANUAL = "manual"
    DELETE = "delete"


class StepStatus(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    RETRYING = "retrying"
    WAITING_FOR_OPERATOR = "waiting_for_operator"
    PROPAGATING = "propagating"  # secured access confirmed; in effect after the propagation delay
    DONE = "done"
    OVERRIDDEN = "overridden"  # verification failed, operator explicitly chose to continue (recorded)
    SKIPPED = "skipped"  # not requested
    FAILED = "failed"

    @property
    def finished(self) -> bool:
        return self in (StepStatus.DONE, StepStatus.OVERRIDDEN, StepStatus.SKIPPED)


class JobStatus(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING_FOR_OPERATOR = "waiting_for_operator"
    PROPAGATING = "propagating"  # every step done, secured access not yet in effect
    FAILED = "failed"
    CANCELLING = "cancelling"  # cancel acknowledged: no Microsoft write starts any more; what the job made is being removed
    CANCELLED = "cancelled"
    COMPLETED = "completed"

    @property
    def terminal(self) -> bool:
        return self in (JobStatus.CANCELLED, JobStatus.COMPLETED)


class EventKind(str, enum.Enum):
    JOB_STARTED = "job_started"
    STEP_STARTED = "step_started"
    STEP_SUCCEEDED = "step_succeeded"
    STEP_RETRYING = "step_retrying"
    WAITING_FOR_OPERATOR = "waiting_for_operator"
    VERIFICATION_FAILED = "verification_failed"
    STEP_OVERRIDDEN = "step_overridden"
    STEP_FAILED = "step_failed"
    SECRET_READY = "secret_ready"
    SECRET_TAKEN = "secret_taken"  # shown to the requester (or entered for them): the stored copy is gone
    SECRET_EXPIRED = "secret_expired"
    PROPAGATION_STARTED = "propagation_started"
    REMINDER_DUE = "reminder_due"
    JOB_COMPLETED = "job_completed"
    JOB_CANCELLING = "job_cancelling"
    JOB_CANCELLED = "job_cancelled"
    SECRET_EXPIRING = "secret_expiring"  # day two: the watch found the client secret expires within 30, 7 or 1 days
    DRIFT_FOUND = "drift_found"  # day two: the watch found the tenant no longer as approved
    DRIFT_RESOLVED = "drift_resolved"
    PLAN_CHANGED = "plan_changed"  # a retry found the tenant changed since approval: the new plan needs approval
    CREDENTIAL_REMOVED = "credential_removed"


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


class _Model:
    def to_dict(self) -> dict[str, Any]:
        out = _jsonable(self)
        assert isinstance(out, dict)
        return out


@dataclass(frozen=True)
class Actor(_Model):
    """Who did something: an Entra object id (Teams `from.aadObjectId`) or a CLI user, and a display name."""

    id: str
    name: str = ""

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "Actor":
        return cls(id=str(d["id"]), name=str(d.get("name", "")))


@dataclass(frozen=True)
class AgentRef(_Model):
    """Which Copilot Studio agent: its Dataverse environment URL plus its schema name or bot id."""

    environment_url: str
    schema_name: str | None = None
    bot_id: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "AgentRef":
        return cls(
            environment_url=str(d["environment_url"]),
            schema_name=d.get("schema_name"),
            bot_id=d.get("bot_id"),
        )


@dataclass(frozen=True)
class AgentSummary(_Model):
    """An agent as listed for the choice card."""

    environment_url: str
    bot_id: str
    name: str
    schema_name: str
    authentication_mode: int | None = None
    published_on: str | None = None
    environment_name: str = ""  # the environment's friendly name, e.g. "Contoso (sandbox)"; "" when unknown

    @property
    def ref(self) -> AgentRef:
        return AgentRef(self.environment_url, schema_name=self.schema_name, bot_id=self.bot_id)


@dataclass(frozen=True)
class SetupRequest(_Model):
    """Everything the operator chose. Defaults follow the blog and Microsoft's docs."""

    agent: AgentRef
    app_display_name: str
    sign_in_audience: str = "AzureADMultipleOrgs"
    redirect_uris: tuple[str, ...] = DEFAULT_REDIRECT_URIS
    implicit_grant_access_tokens: bool = True
    implicit_grant_id_tokens: bool = True
    credential: str = FEDERATED
    secret_lifetime_days: int = DEFAULT_SECRET_LIFETIME_DAYS
    create_service_principal: bool = False
    require_secured_access: bool = True
    connect_customer_service: bool = True
    purpose: str = SETUP  # a day-two job: rotate the credential, repair drift, or remove the setup
    retire: tuple[str, ...] = ()  # (kind, id, what) of the credential a rotation replaces: removed once the new one works

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SetupRequest":
        kw: dict[str, Any] = {k: v for k, v in d.items() if k in {f.name for f in dataclasses.fields(cls)}}
        kw["agent"] = AgentRef.from_dict(d["agent"])
        for key in ("redirect_uris", "retire"):
            if key in kw:
                kw[key] = tuple(kw[key])
        return cls(**kw)


@dataclass(frozen=True)
class Change(_Model):
    """One attribute a step will set: `before` is None when it does not exist yet."""

    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class PlannedStep(_Model):
    step: StepName
    action: StepAction
    summary: str  # one line, e.g. "Create app registration 'Contoso auth' (AzureADMultipleOrgs)"
    changes: tuple[Change, ...] = ()
    notes: tuple[str, ...] = ()  # e.g. "The secret is shown once, to the requester only"
    skip_reason: str = ""  # set when the step will not run, e.g. "the agent's name is over 30 characters"


@dataclass(frozen=True)
class PreflightCheck(_Model):
    name: str  # e.g. "graph_role", "dataverse_access", "secret_lifetime_policy"
    ok: bool
    message: str  # what was found
    remedy: str = ""  # how to grant what is missing (empty when ok)
    advice: bool = False  # ok, but worth the approver's attention (shown as a warning on the plan)


@dataclass(frozen=True)
class PreflightReport(_Model):
    checks: tuple[PreflightCheck, ...]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


@dataclass(frozen=True)
class Plan(_Model):
    """A diff of the tenant against the request. `hash` covers the request and every planned step,
    so applying can refuse a plan whose tenant state has moved on."""

    request: SetupRequest
    agent: AgentSummary
    steps: tuple[PlannedStep, ...]
    preflight: PreflightReport
    hash: str
    created_at: datetime


@dataclass(frozen=True)
class GuidedInstructions(_Model):
    """What the operator must do by hand for a guided step, and where."""

    title: str
    steps: tuple[str, ...]  # numbered instructions, plain text
    values: tuple[tuple[str, str], ...] = ()  # (label, value) to copy, e.g. ("Client ID", "…"); never a secret
    links: tuple[tuple[str, str], ...] = ()  # (label, url) deep links
    secret_handoff: bool = False  # the client secret must be fetched through the one-time hand-off
    inputs: tuple[tuple[str, str, str], ...] = ()  # (id, label, hint) the person fills in, e.g. what Copilot Studio shows
    previous: tuple[str, ...] = ()  # (when, who) confirmed this step for the same agent before; the person may keep it


@dataclass(frozen=True)
class StepView(_Model):
    step: StepName
    status: StepStatus
    message: str = ""  # last progress / failure text, actionable
    attempts: int = 0
    instructions: GuidedInstructions | None = None
    verification: str = ""  # what verification found (e.g. "authenticationmode is 1 (None)")
    outputs: Mapping[str, str] = field(default_factory=dict)  # e.g. {"client_id": …, "object_id": …}; never secrets
    due_at: datetime | None = None  # propagation: when the setting is in effect


@dataclass(frozen=True)
class JobView(_Model):
    id: str
    status: JobStatus
    plan_hash: str
    request: SetupRequest
    agent: AgentSummary
    steps: tuple[StepView, ...]
    requested_by: Actor
    approved_by: Actor
    created_at: datetime
    updated_at: datetime
    secret_available: bool = False  # the one-time hand-off still holds the secret
    secret_shown: bool = False  # the requester has seen it (it stays until they say they copied it, or the hand-off expires)
    handoff_expires_at: datetime | None = None  # when an unclaimed secret is removed from the app registration
    cleanup: tuple[tuple[str, str], ...] = ()  # (what is being removed, "pending" | "retrying" | "done"), e.g. after a cancel
    tags: Mapping[str, str] = field(default_factory=dict)  # opaque front-end data, e.g. {"conversation": "…"}

    def step(self, name: StepName) -> StepView:
        for s in self.steps:
            if s.step == name:
                return s
        raise KeyError(name)


@dataclass(frozen=True)
class Event(_Model):
    """A progress event, read back from the journal in `seq` order (so none is lost across restarts)."""

    seq: int
    job_id: str
    kind: EventKind
    at: datetime
    step: StepName | None = None
    message: str = ""
    data: Mapping[str, Any] = field(default_factory=dict)


def plan_from_dict(d: Mapping[str, Any]) -> Plan:
    """Rebuild a Plan from `Plan.to_dict()` (front ends keep the approved plan in their own state)."""
    steps = tuple(
        PlannedStep(
            step=StepName(s["step"]), action=StepAction(s["action"]), summary=s["summary"],
            changes=tuple(Change(c["field"], c["before"], c["after"]) for c in s.get("changes", ())), notes=tuple(s.get("notes", ())),
            skip_reason=s.get("skip_reason", ""),
        )
        for s in d["steps"]
    )
    checks = tuple(PreflightCheck(**c) for c in d["preflight"]["checks"])
    return Plan(
        request=SetupRequest.from_dict(d["request"]), agent=AgentSummary(**d["agent"]), steps=steps,
        preflight=PreflightReport(checks), hash=d["hash"], created_at=datetime.fromisoformat(d["created_at"]),
    )
