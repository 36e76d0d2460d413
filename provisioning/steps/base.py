"""What every setup step shares: the context it runs in, and the four verbs read → decide → act → verify.

The same `read` + `decide` make the plan line the approver sees and the decision the job acts on, so the
plan shown is the plan applied.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from ..config import Settings
from ..dataverse import DataverseClient
from ..graph import GraphClient
from ..models import AgentSummary, GuidedInstructions, PlannedStep, SetupRequest, StepName

SECRET_MARKER = "Copilot Setup Bot"


@dataclass
class StepContext:
    request: SetupRequest
    agent: AgentSummary
    organization_id: str
    tenant_id: str
    graph: GraphClient
    dataverse: DataverseClient
    settings: Settings
    data: dict[str, Any] = field(default_factory=dict)  # durable job data (ids, timestamps); never secrets
    job_id: str = ""
    portal_url: str | None = None  # the sandbox's read-only portal, when running against it (links go there)
    secret_waiting: bool = False  # a client secret of this job still waits in the hand-off (set when verifying)
    on_retry: Callable[[str, float], Awaitable[None]] | None = None
    heartbeat: Callable[[], Awaitable[None]] | None = None
    save: Callable[[dict[str, Any]], Awaitable[None]] | None = None  # persists `data` changes durably
    seal_secret: Callable[[str, str, dict[str, Any]], Awaitable[None]] | None = None  # (key id, text, data) in one transaction
    sleep: Callable[[float], Awaitable[None]] | None = None
    # What this run has just read (or been told by a write): "app", "bot", "bot_user:<id>". A resource read by
    # several steps is read once; a write forgets what it changed. Held in memory only, for seconds (see
    # ProvisioningService.hand_over), so a resumed job always reads the tenant again.
    fresh: dict[str, "asyncio.Future[Any]"] = field(default_factory=dict)

    async def cached(self, key: str, read: Callable[[], Awaitable[Any]]) -> Any:
        """`read()`, unless this run already read `key` or is reading it (then that answer)."""
        future = self.fresh.get(key)
        if future is None:
            future = self.fresh[key] = asyncio.ensure_future(read())
        try:
            return await asyncio.shield(future)
        except Exception:
            if self.fresh.get(key) is future:
                del self.fresh[key]
            raise

    async def application(self, step: str) -> dict[str, Any] | None:
        """This setup's app registration (by its uniqueName), as this run knows it."""
        app: dict[str, Any] | None = await self.cached("app", lambda: self.graph.get_application_by_unique_name(self.unique_name, step=step))
        return app

    async def agent_bot(self, step: str) -> dict[str, Any]:
        """The agent's Dataverse bot row, as this run knows it."""
        bot: dict[str, Any] = await self.cached("bot", lambda: self.dataverse.get_bot(self.agent.bot_id, step=step))
        return bot

    def know(self, key: str, value: Any) -> None:
        """Record the state a write just returned, so the next step need not read it back."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        future.set_result(value)
        self.fresh[key] = future

    def forget(self, *prefixes: str) -> None:
        for key in [k for k in self.fresh if k.startswith(prefixes)]:
            del self.fresh[key]

    def known(self) -> dict[str, "asyncio.Future[Any]"]:
        """The reads that succeeded, to hand to the next run of this job."""
        return {k: f for k, f in self.fresh.items() if f.done() and not f.cancelled() and f.exception() is None}

    async def remember(self, **values: Any) -> None:
        self.data.update(values)
        if self.save is not None:
            await self.save(dict(self.data))

    async def beat(self) -> None:
        if self.heartbeat is not None:
            await self.heartbeat()

    @property
    def unique_name(self) -> str:
        return unique_name(self.organization_id, self.agent.schema_name)


def unique_name(organization_id: str, schema_name: str) -> str:
    """Deterministic per environment + agent, so a re-run never makes a second app registration."""
    import hashlib

    name = f"cps-auth-{organization_id}-{schema_name}".lower()
    if len(name) > 120:
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        name = f"{name[:100]}-{digest}"
    return name


def now() -> datetime:
    return datetime.now(timezone.utc)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class Verification:
    ok: bool
    text: str


class Step:
    name: StepName
    guided = False

    def applies(self, request: SetupRequest) -> bool:
        return True

    def ready(self, ctx: StepContext) -> bool:
        """For a guided step: the person has given what it needs, and the job does the rest itself."""
        return False

    def skip_reason(self, request: SetupRequest, agent: AgentSummary) -> str:
        """Why the plan skips this step (shown on the plan card) when `applies` is False."""
        return "not requested"

    async def read(self, ctx: StepContext) -> dict[str, Any]:
        raise NotImplementedError

    def decide(self, ctx: StepContext, current: dict[str, Any]) -> PlannedStep:
        raise NotImplementedError

    async def act(self, ctx: StepContext, current: dict[str, Any]) -> dict[str, str]:
        """Change the tenant; return outputs worth showing (never secrets). Automated steps only."""
        raise NotImplementedError

    async def verify(self, ctx: StepContext) -> Verification:
        return Verification(True, "")

    async def adopt(self, ctx: StepContext, current: dict[str, Any]) -> None:
        """Nothing had to change: record in the job what later steps need from what exists (as `act` would have)."""

    def outputs(self, ctx: StepContext, current: dict[str, Any]) -> dict[str, str]:
        """Outputs when nothing had to change."""
        return {}

    def instructions(self, ctx: StepContext) -> GuidedInstructions:
        raise NotImplementedError


def entra_link(app_id: str, portal_url: str | None = None) -> str:
    """The app registration's page: Entra's, or the sandbox portal's for the sandbox's own objects."""
    if portal_url:
        return f"{portal_url.rstrip('/')}/applications/{app_id}"
    return f"https://entra.microsoft.com/#view/Microsoft_AAD_RegisteredApps/ApplicationMenuBlade/~/Overview/appId/{app_id}"


def copilot_link(bot_id: str, portal_url: str | None = None) -> str:
    """Where the agent is configured: Copilot Studio, or the sandbox portal's read-only view of the agent."""
    if portal_url:
        return f"{portal_url.rstrip('/')}/agents/{bot_id}"
    return COPILOT_STUDIO


COPILOT_STUDIO = "https://copilotstudio.microsoft.com/"

