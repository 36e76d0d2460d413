"""What the parts of the provisioning service share: settings, the store, the Microsoft clients, and the one way
a job is changed (`apply`), which also journals the Microsoft request ids the job's calls produced."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from dataclasses import replace
from typing import Any, Awaitable, Callable

import httpx

from store import Fence, JobChange, NewAudit, Sealed, Store

from .auth import TokenProvider
from .config import Settings
from .dataverse import DataverseClient
from .errors import JobStateError
from .graph import GraphClient
from .http import MicrosoftHttp, RetryPolicy
from .journal import ACTIVE, SERVICE, JobRecord, audit, event
from .models import AgentSummary, EventKind, SetupRequest, StepName
from .sandbox_operator import SandboxOperator
from .steps import StepContext
from .trust import combined_bundle, ssl_context
from .vault import Vault

log = logging.getLogger(__name__)
FRESH_FOR_S = 10.0  # how long reads made at approval or confirmation may stand in for the next run's own
current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_job", default=None)
last_request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("microsoft_request_id", default=None)


class Core:
    def __init__(self, settings: Settings, store: Store, *, retry: RetryPolicy, sleep: Callable[[float], Awaitable[None]]) -> None:
        self.settings = settings
        self.store = store
        self.retry = retry
        self.sleep = sleep
        self.tokens = TokenProvider(settings)
        self.vault: Vault
        self.graph: GraphClient
        self.dataverse: dict[str, DataverseClient] = {}
        self.operator: SandboxOperator | None = None
        self.wake: Callable[[], None] = lambda: None
        self.observers: list[Callable[[str, int], None]] = []  # (service, HTTP status) of every Microsoft call, for metrics
        self._clients: list[httpx.AsyncClient] = []
        self._requests: dict[str, list[NewAudit]] = {}
        self._fresh: dict[str, tuple[float, dict[str, "asyncio.Future[Any]"]]] = {}

    async def start(self, vault: Vault) -> None:
        self.vault = vault
        verify: Any = True
        if self.settings.ca_bundles:
            verify = await asyncio.to_thread(ssl_context, self.settings.ca_bundles)
            folder = self.settings.state_db.parent
            combined = await asyncio.to_thread(combined_bundle, self.settings.ca_bundles, folder)
            self.settings = replace(self.settings, ca_bundle=combined)
            self.tokens = TokenProvider(self.settings)
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=20)
        timeout = httpx.Timeout(30.0, connect=10.0)
        graph_client = httpx.AsyncClient(verify=verify, limits=limits, timeout=timeout)
        dataverse_client = httpx.AsyncClient(verify=verify, limits=limits, timeout=timeout)
        self._clients = [graph_client, dataverse_client]

        def http(service: Any, url: str, resource: str, client: httpx.AsyncClient) -> MicrosoftHttp:
            def record(method: str, path: str, status: int, request_id: str) -> None:
                self._record(service, method, path, status, request_id)

            return MicrosoftHttp(service=service, base_url=url, resource=resource, tokens=self.tokens, client=client,
                                 retry=self.retry, on_response=record, sleep=self.sleep)

        self.graph = GraphClient(http("graph", self.settings.graph_endpoint, self.settings.graph_resource, graph_client))
        self.dataverse = {url: DataverseClient(http("dataverse", url, url, dataverse_client), url) for url in self.settings.dataverse_urls}
        if self.settings.sandbox_url:
            operator_client = httpx.AsyncClient(verify=verify, timeout=timeout)
            self._clients.append(operator_client)
            self.operator = SandboxOperator(self.settings.sandbox_url, operator_client)

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()

    # ---- jobs -------------------------------------------------------------------------------------------------

    async def load(self, job_id: str) -> JobRecord:
        snap = await self.store.jobs.get(job_id)
        if snap is None:
            raise JobStateError(f"There is no setup job {job_id}.", action="Check the job id with 'status'.")
        return JobRecord.of(snap)

    async def apply(self, change: JobChange) -> list[int]:
        """Apply one change to a job (see store.JobChange), with the audit entries of the Microsoft requests made on
        the job's behalf since the last change. If the change is refused, those entries are kept on their own."""
        requests = self._requests.pop(change.job_id, [])
        change.audit = [*change.audit, *requests]
        try:
            seqs = await self.store.jobs.apply(change)
        except BaseException:
            for entry in requests:
                await self.store.jobs.record_audit(change.job_id, entry)
            raise
        if change.events:
            self.wake()
        return seqs

    def _record(self, service: str, method: str, path: str, status: int, request_id: str) -> None:
        last_request_id.set(request_id or None)
        for observe in self.observers:
            observe(service, status)
        job = current_job.get()
        if job:
            self._requests.setdefault(job, []).append(audit(SERVICE, "microsoft_request", method=method, path=path, status=status,
                                                            request_id=request_id))

    def context_for(self, request: SetupRequest, agent: AgentSummary, org_id: str, data: dict[str, Any]) -> StepContext:
        return StepContext(
            request=request, agent=agent, organization_id=org_id, tenant_id=self.settings.tenant_id, graph=self.graph,
            dataverse=self.dataverse[agent.environment_url], settings=self.settings, data=data, sleep=self.sleep,
            portal_url=self.settings.sandbox_portal_url,
        )

    def context(self, job: JobRecord, fence: Fence | None, *, allow: tuple[str, ...] = ACTIVE) -> StepContext:
        """A job's step context: its durable data saved, and secrets sealed, by fenced changes."""
        ctx = self.context_for(job.request, job.agent, str(job.data.get("organization_id", "")), dict(job.data))
        ctx.job_id = job.id
        current_job.set(job.id)
        ttl = self.settings.secret_handoff_ttl.total_seconds()

        async def save(values: dict[str, Any]) -> None:
            await self.apply(JobChange(job.id, fence=fence, allow=allow, data=values))

        async def seal(key_id: str, secret: str, values: dict[str, Any]) -> None:
            await self.apply(JobChange(
                job.id, fence=fence, allow=allow, data=values, seal=Sealed(key_id, self.vault.seal(secret), time.time() + ttl),
                events=[event(EventKind.SECRET_READY, step=StepName.CLIENT_SECRET, message="The client secret is ready for the requester.",
                              data={"hint": values.get("secret_hint"), "expires": values.get("secret_end")})],
                audit=[audit(SERVICE, "secret_created", key_id=key_id, hint=values.get("secret_hint"))]))

        ctx.save = save
        ctx.seal_secret = seal
        return ctx

    def hand_over(self, job_id: str, ctx: StepContext) -> None:
        """Keep what was just read for the job's next run (after approval, or after a person confirmed a step), for
        FRESH_FOR_S at most: a run that starts later, or in another instance, reads the tenant itself."""
        now = time.monotonic()
        for stale in [j for j, (at, _) in self._fresh.items() if now - at > FRESH_FOR_S]:
            del self._fresh[stale]
        self._fresh[job_id] = (now, ctx.known())

    def take_over(self, job_id: str) -> dict[str, "asyncio.Future[Any]"]:
        at, known = self._fresh.pop(job_id, (0.0, {}))
        return known if time.monotonic() - at <= FRESH_FOR_S else {}
