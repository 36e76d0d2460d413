"""The provisioning service: the one entry point front ends use (see docs/ARCHITECTURE.md)."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import sqlite3
import ssl
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Mapping

import httpx

from .auth import TokenProvider
from .config import Settings
from .dataverse import DataverseClient
from .errors import (
    FieldError,
    JobStateError,
    MicrosoftApiError,
    NotAuthorizedError,
    ProvisioningError,
    StalePlanError,
    ValidationFailed,
)
from .graph import GraphClient
from .http import MicrosoftHttp, RetryPolicy
from .journal import Journal
from .models import (
    Actor,
    AgentSummary,
    Event,
    EventKind,
    GuidedInstructions,
    JobStatus,
    JobView,
    Plan,
    SetupRequest,
    StepName,
    StepStatus,
    StepView,
)
from .planner import make_plan, policy_check, preflight_identity, raise_if, read_steps
from .sandbox_operator import SandboxOperator
from .steps import STEPS, Step, StepContext
from .trust import combined_bundle, ssl_context
from .validation import validate_agent_name, validate_request
from .vault import Vault, load_key
from .worker import Worker

log = logging.getLogger(__name__)
FRESH_FOR_S = 10.0  # how long reads made at approval or confirmation may stand in for the next run's own
_current_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("current_job", default=None)
STEP_BY_NAME: dict[str, Step] = {s.name.value: s for s in STEPS}


def _ts(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, timezone.utc) if value else None


@dataclass
class JobRecord:
    id: str
    status: JobStatus
    plan: dict[str, Any]
    data: dict[str, Any]
    requested_by: Actor
    approved_by: Actor
    tags: dict[str, str]
    created_at: float
    updated_at: float

    @property
    def request(self) -> SetupRequest:
        return SetupRequest.from_dict(self.plan["request"])

    @property
    def agent(self) -> AgentSummary:
        return AgentSummary(**self.plan["agent"])


class ProvisioningService:
    def __init__(
        self,
        settings: Settings,
        *,
        run_worker: bool = True,
        retry: RetryPolicy | None = None,
        worker_poll_interval: float = 1.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.journal = Journal(settings.state_db)
        self._run_worker = run_worker
        self._retry = retry or RetryPolicy()
        self._sleep = sleep
        self._poll = worker_poll_interval
        self.tokens = TokenProvider(settings)
        self.worker: Worker | None = None
        self._clients: list[httpx.AsyncClient] = []
        self._job_locks: dict[str, asyncio.Lock] = {}
        self._audit_buffer: list[tuple[str, str, str, int, str]] = []
        self._agents: tuple[float, list[AgentSummary]] | None = None
        self._fresh: dict[str, tuple[float, dict[str, asyncio.Future[Any]]]] = {}
        self._agents_reading: asyncio.Task[list[AgentSummary]] | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        await self.journal.open()
        key = await asyncio.to_thread(load_key, self.settings.secret_encryption_key, self.settings.secret_key_file)
        self.vault = Vault(self.journal, key)
        verify: ssl.SSLContext | bool = True
        if self.settings.ca_bundles:
            verify = await asyncio.to_thread(ssl_context, self.settings.ca_bundles)
            combined = await asyncio.to_thread(combined_bundle, self.settings.ca_bundles, self.settings.state_db.parent)
            self.settings = replace(self.settings, ca_bundle=combined)
            self.tokens = TokenProvider(self.settings)
        limits = httpx.Limits(max_connections=50, max_keepalive_connections=20)
        timeout = httpx.Timeout(30.0, connect=10.0)
        graph_client = httpx.AsyncClient(verify=verify, limits=limits, timeout=timeout)
        dataverse_client = httpx.AsyncClient(verify=verify, limits=limits, timeout=timeout)
        self._clients = [graph_client, dataverse_client]
        self.graph = GraphClient(MicrosoftHttp(
            service="graph", base_url=self.settings.graph_endpoint, resource=self.settings.graph_resource, tokens=self.tokens,
            client=graph_client, retry=self._retry, on_response=self._record, sleep=self._sleep))
        self.dataverse = {
            url: DataverseClient(MicrosoftHttp(
                service="dataverse", base_url=url, resource=url, tokens=self.tokens, client=dataverse_client,
                retry=self._retry, on_response=self._record, sleep=self._sleep), url)
            for url in self.settings.dataverse_urls
        }
        self.operator: SandboxOperator | None = None
        if self.settings.sandbox_url:
            operator_client = httpx.AsyncClient(verify=verify, timeout=timeout)
            self._clients.append(operator_client)
            self.operator = SandboxOperator(self.settings.sandbox_url, operator_client)
        if self._run_worker:
            self.worker = Worker(self, poll_interval=self._poll)
            self.worker.start()

    async def close(self) -> None:
        if self.worker is not None:
            await self.worker.stop()
        for client in self._clients:
            await client.aclose()
        await self.journal.close()

    async def ready(self) -> bool:
        try:
            ok = await self.journal.ping()
        except Exception:  # noqa: BLE001 - readiness answers, it does not raise
            return False
        return ok and (self.worker is None or self.worker.alive)

    @property
    def sandbox_available(self) -> bool:
        return self.operator is not None

    def _record(self, method: str, path: str, status: int, request_id: str) -> None:
        job = _current_job.get()
        if job:
            self._audit_buffer.append((job, method, path, status, request_id))

    def _flush_audit(self, c: sqlite3.Connection, job_id: str) -> None:
        keep = []
        for entry in self._audit_buffer:
            if entry[0] == job_id:
                Journal.audit(c, job_id, {"id": "provisioning-service"}, "microsoft_request",
                              {"method": entry[1], "path": entry[2], "status": entry[3], "request_id": entry[4]})
            else:
                keep.append(entry)
        self._audit_buffer = keep

    def _wake(self) -> None:
        if self.worker is not None:
            self.worker.wake.set()

    # ---- agents and plans -------------------------------------------------------------------------------------

    async def list_agents(self) -> list[AgentSummary]:
        """The agents in every configured environment, at most AGENT_LIST_MAX_AGE old.

        Every `/setup copilot` shows this list, so it is read once and shared: concurrent callers wait for the same
        Dataverse read. A plan always re-reads its agent, so a list a few seconds old never decides what changes.
        """
        now = time.monotonic()
        if self._agents is not None and now - self._agents[0] < self.settings.agent_list_max_age.total_seconds():
            return list(self._agents[1])
        if self._agents_reading is None or self._agents_reading.done():
            self._agents_reading = asyncio.create_task(self._read_agents())
        return list(await asyncio.shield(self._agents_reading))

    def forget_agents(self) -> None:
        """Drop the cached agent list (an agent was changed here), so the next listing reads Dataverse."""
        self._agents = None

    async def _read_agents(self) -> list[AgentSummary]:
        started = time.monotonic()
        results = await asyncio.gather(*(client.list_bots() for client in self.dataverse.values()))
        agents = [
            AgentSummary(environment_url=url, bot_id=b["botid"], name=b["name"], schema_name=b["schemaname"],
                         authentication_mode=b.get("authenticationmode"), published_on=b.get("publishedon"))
            for url, bots in zip(self.dataverse, results, strict=True) for b in bots
        ]
        order = {url: i for i, url in enumerate(self.settings.dataverse_urls)}  # environments in DATAVERSE_URL's order
        agents.sort(key=lambda a: (order.get(a.environment_url, len(order)), a.name.lower()))
        self._agents = (started, agents)
        return agents

    async def _resolve_agent(self, request: SetupRequest) -> tuple[AgentSummary | None, dict[str, Any] | None]:
        client = self.dataverse[request.agent.environment_url.rstrip("/")]
        bot = await client.find_bot(schema_name=request.agent.schema_name, bot_id=request.agent.bot_id)
        if bot is None:
            return None, None
        return AgentSummary(environment_url=client.environment_url, bot_id=bot["botid"], name=bot["name"],
                            schema_name=bot["schemaname"], authentication_mode=bot.get("authenticationmode"),
                            published_on=bot.get("publishedon")), bot

    async def plan(self, request: SetupRequest) -> Plan:
        return (await self._plan(request))[0]

    async def _plan(self, request: SetupRequest) -> tuple[Plan, StepContext]:
        """Read the tenant in as few round trips as the data allows: the identity checks, the agent, the tenant's
        secret policy and the organization id at once; then every step's own reads at once (reusing the agent)."""
        errors = validate_request(request, self.settings.dataverse_urls)
        if errors:
            raise ValidationFailed(errors)
        client = self.dataverse[request.agent.environment_url.rstrip("/")]
        roles = asyncio.ensure_future(self.tokens.roles(self.settings.graph_resource))
        whoami = asyncio.ensure_future(client.who_am_i())
        found = asyncio.ensure_future(self._resolve_agent(request))
        policy_read = asyncio.ensure_future(self.graph.get_app_management_policy())
        org_read = asyncio.ensure_future(client.organization_id())
        reads: list[asyncio.Future[Any]] = [found, policy_read, org_read]
        try:
            checks = await preflight_identity(roles, whoami)
            raise_if([], checks)
        except BaseException:
            for task in reads:
                task.cancel()
            await asyncio.gather(*reads, return_exceptions=True)
            raise
        await asyncio.gather(*reads)
        (agent, bot), policy, org_id = found.result(), policy_read.result(), org_read.result()
        if agent is None:
            which = request.agent.schema_name or request.agent.bot_id
            raise ValidationFailed([FieldError("agent", f"No agent '{which}' in {client.environment_url}. Choose one from the list, or check its schema name in Copilot Studio → Settings → Advanced → Metadata.")])
        policy_result, policy_error = policy_check(policy, request.secret_lifetime_days)
        checks.append(policy_result)
        raise_if(validate_agent_name(request, agent.name) + ([policy_error] if policy_error else []), checks)
        ctx = self._context_for(request, agent, org_id, {})
        ctx.know("bot", bot)
        steps = await read_steps(ctx)
        return make_plan(request, agent, steps, checks), ctx

    def hand_over(self, job_id: str, ctx: StepContext) -> None:
        """Keep what was just read for the job's next run (its first run after approval, or the run after a person
        confirmed a step), for FRESH_FOR_S at most: a run that starts later reads the tenant itself."""
        now = time.monotonic()
        for stale in [j for j, (at, _) in self._fresh.items() if now - at > FRESH_FOR_S]:  # runs that started elsewhere, or never
            del self._fresh[stale]
        self._fresh[job_id] = (now, ctx.known())

    def take_over(self, job_id: str) -> dict[str, "asyncio.Future[Any]"]:
        at, known = self._fresh.pop(job_id, (0.0, {}))
        return known if time.monotonic() - at <= FRESH_FOR_S else {}

    def _context_for(self, request: SetupRequest, agent: AgentSummary, org_id: str, data: dict[str, Any]) -> StepContext:
        return StepContext(
            request=request, agent=agent, organization_id=org_id, tenant_id=self.settings.tenant_id, graph=self.graph,
            dataverse=self.dataverse[agent.environment_url], settings=self.settings, data=data, sleep=self._sleep,
        )

    # ---- jobs -------------------------------------------------------------------------------------------------

    async def submit(self, plan: Plan, requested_by: Actor, approved_by: Actor, tags: Mapping[str, str] | None = None) -> JobView:
        return await self.submit_approved(plan.request, plan.hash, requested_by, approved_by, tags)

    async def submit_approved(self, request: SetupRequest, plan_hash: str, requested_by: Actor, approved_by: Actor,
                              tags: Mapping[str, str] | None = None, *, job_id: str | None = None) -> JobView:
        """Apply the plan that was approved, identified by its hash: the tenant is read again, and a plan whose
        hash no longer matches is refused (StalePlanError). With `job_id` the call is idempotent: if that job
        exists already (the same approval, delivered again), it is returned and nothing else happens."""
        if job_id is not None:
            async with await self._locked(job_id):
                existing = await self.journal.tx(lambda c: Journal.job_row(c, job_id))
                if existing is not None:
                    if existing["plan_hash"] != plan_hash:
                        raise JobStateError(f"Job {job_id} exists for another plan.", action="Type /setup copilot to start again.")
                    return await self.get_job(job_id)
                try:
                    return await self._submit(request, plan_hash, requested_by, approved_by, tags, job_id)
                except sqlite3.IntegrityError:  # another process created it between our read and our insert
                    return await self.get_job(job_id)
        return await self._submit(request, plan_hash, requested_by, approved_by, tags, str(uuid.uuid4()))

    async def _submit(self, request: SetupRequest, plan_hash: str, requested_by: Actor, approved_by: Actor,
                      tags: Mapping[str, str] | None, job_id: str) -> JobView:
        current, read = await self._plan(request)
        if current.hash != plan_hash:
            raise StalePlanError(plan_hash, current.hash)
        org_id = read.organization_id
        active = {s.step for s in current.steps}
        now = time.time()

        def create(c: sqlite3.Connection) -> None:
            c.execute(
                "INSERT INTO jobs (id, status, plan_hash, plan, requested_by, approved_by, tags, data, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (job_id, JobStatus.QUEUED.value, current.hash, json.dumps(current.to_dict()), json.dumps(requested_by.to_dict()),
                 json.dumps(approved_by.to_dict()), json.dumps(dict(tags or {})), json.dumps({"organization_id": org_id}), now, now),
            )
            for position, step in enumerate(STEPS):
                status = StepStatus.PENDING if step.name in active else StepStatus.SKIPPED
                c.execute("INSERT INTO steps (job_id, position, name, status) VALUES (?, ?, ?, ?)", (job_id, position, step.name.value, status.value))
            Journal.audit(c, job_id, requested_by.to_dict(), "requested", {"agent": current.agent.to_dict(), "request": current.request.to_dict()})
            Journal.audit(c, job_id, approved_by.to_dict(), "approved", {"plan_hash": current.hash})
            Journal.event(c, job_id, EventKind.JOB_STARTED.value, message=f"Approved by {approved_by.name or approved_by.id}")

        await self.journal.tx(create)
        self.hand_over(job_id, read)
        await self.journal.notify()
        self._wake()
        return await self.get_job(job_id)

    async def load(self, job_id: str) -> JobRecord:
        row = await self.journal.tx(lambda c: Journal.job_row(c, job_id))
        if row is None:
            raise JobStateError(f"There is no setup job {job_id}.", action="Check the job id with 'status'.")
        return JobRecord(
            id=row["id"], status=JobStatus(row["status"]), plan=json.loads(row["plan"]), data=json.loads(row["data"]),
            requested_by=Actor.from_dict(json.loads(row["requested_by"])), approved_by=Actor.from_dict(json.loads(row["approved_by"])),
            tags=json.loads(row["tags"]), created_at=row["created_at"], updated_at=row["updated_at"],
        )

    async def step_rows(self, job_id: str) -> list[sqlite3.Row]:
        return await self.journal.tx(lambda c: Journal.step_rows(c, job_id))

    async def context(self, job_id: str, data: dict[str, Any], *, heartbeat: Callable[[], Awaitable[None]] | None = None) -> StepContext:
        job = await self.load(job_id)
        ctx = self._context_for(job.request, job.agent, str(job.data.get("organization_id", "")), data)
        ctx.job_id = job_id
        ctx.heartbeat = heartbeat
        _current_job.set(job_id)

        async def save(values: dict[str, Any]) -> None:
            await self.journal.tx(lambda c: Journal.update_job(c, job_id, data=values))

        async def seal(key_id: str, secret: str, values: dict[str, Any]) -> None:
            ttl = self.settings.secret_handoff_ttl.total_seconds()

            def fn(c: sqlite3.Connection) -> None:
                self.vault.seal(c, job_id, key_id, secret, ttl)
                Journal.update_job(c, job_id, data=values)
                Journal.event(c, job_id, EventKind.SECRET_READY.value, step=StepName.CLIENT_SECRET.value,
                              message="The client secret is ready for the requester to retrieve once.",
                              data={"hint": values.get("secret_hint"), "expires": values.get("secret_end")})
                Journal.audit(c, job_id, {"id": "provisioning-service"}, "secret_created", {"key_id": key_id, "hint": values.get("secret_hint")})

            await self.journal.tx(fn)

        ctx.save = save
        ctx.seal_secret = seal
        return ctx

    async def set_job_status(self, job_id: str, status: JobStatus) -> None:
        await self.journal.tx(lambda c: Journal.update_job(c, job_id, status=status.value))
        await self.journal.notify()

    async def step_done(self, job_id: str, name: str, outputs: Mapping[str, str], message: str) -> None:
        def fn(c: sqlite3.Connection) -> None:
            Journal.update_step(c, job_id, name, status=StepStatus.DONE.value, message=message, outputs=dict(outputs), verification="")
            Journal.event(c, job_id, EventKind.STEP_SUCCEEDED.value, step=name, message=message, data=dict(outputs))
            self._flush_audit(c, job_id)

        await self.journal.tx(fn)
        self.forget_agents()  # a step may have changed the agent (authentication, publish time)
        await self.journal.notify()

    async def step_failed(self, job_id: str, name: str, exc: ProvisioningError) -> None:
        text = exc.user_message()
        detail: dict[str, Any] = {"error": type(exc).__name__}
        if isinstance(exc, MicrosoftApiError):
            detail |= {"status": exc.status, "code": exc.code, "request_id": exc.request_id, "service": exc.service}

        def fn(c: sqlite3.Connection) -> None:
            Journal.update_step(c, job_id, name, status=StepStatus.FAILED.value, message=text)
            Journal.update_job(c, job_id, status=JobStatus.FAILED.value)
            Journal.event(c, job_id, EventKind.STEP_FAILED.value, step=name, message=text, data=detail)
            Journal.audit(c, job_id, {"id": "provisioning-service"}, "step_failed", {"step": name, **detail})
            self._flush_audit(c, job_id)

        await self.journal.tx(fn)
        await self.journal.notify()

    async def wait_for_operator(self, job_id: str, step: Step, ctx: StepContext) -> None:
        instructions = step.instructions(ctx)

        def fn(c: sqlite3.Connection) -> None:
            Journal.update_step(c, job_id, step.name.value, status=StepStatus.WAITING_FOR_OPERATOR.value,
                                message=instructions.title, instructions=json.dumps(instructions.to_dict()))
            Journal.update_job(c, job_id, status=JobStatus.WAITING_FOR_OPERATOR.value)
            Journal.event(c, job_id, EventKind.WAITING_FOR_OPERATOR.value, step=step.name.value, message=instructions.title)
            self._flush_audit(c, job_id)

        await self.journal.tx(fn)
        await self.journal.notify()

    async def finish_if_done(self, job_id: str) -> None:
        def fn(c: sqlite3.Connection) -> bool:
            row = Journal.job_row(c, job_id)
            if row is None or row["status"] in (JobStatus.COMPLETED.value, JobStatus.CANCELLED.value, JobStatus.FAILED.value):
                return False
            statuses = [StepStatus(r["status"]) for r in Journal.step_rows(c, job_id)]
            if all(s.finished for s in statuses):
                Journal.update_job(c, job_id, status=JobStatus.COMPLETED.value)
                Journal.event(c, job_id, EventKind.JOB_COMPLETED.value, message="Every step is done.")
                Journal.audit(c, job_id, {"id": "provisioning-service"}, "completed")
                return True
            if all(s.finished or s == StepStatus.PROPAGATING for s in statuses):
                Journal.update_job(c, job_id, status=JobStatus.PROPAGATING.value)
            return False

        await self.journal.tx(fn)
        await self.journal.notify()

    async def _locked(self, job_id: str) -> asyncio.Lock:
        return self._job_locks.setdefault(job_id, asyncio.Lock())

    async def confirm_step(self, job_id: str, step: StepName, actor: Actor, *, override: bool = False) -> JobView:
        async with await self._locked(job_id):
            rows = {r["name"]: r for r in await self.step_rows(job_id)}
            row = rows.get(step.value)
            if row is None:
                raise JobStateError(f"Job {job_id} has no step {step.value}.")
            status = StepStatus(row["status"])
            if status != StepStatus.WAITING_FOR_OPERATOR:
                raise JobStateError(f"'{step.label}' is not waiting for you: it is {status.value.replace('_', ' ')}.",
                                    action="Refresh the progress card to see the current state.")
            job = await self.load(job_id)
            impl = STEP_BY_NAME[step.value]
            if override:
                if not row["verification"]:
                    raise JobStateError("'Continue anyway' is only offered after a verification has failed.", action="Select Done first.")
                await self._finish_guided(job_id, step, actor, StepStatus.OVERRIDDEN,
                                          f"Continued without verification by {actor.name or actor.id}: {row['verification']}", "overridden")
            else:
                ctx = await self.context(job_id, job.data)
                check = await impl.verify(ctx)
                self.hand_over(job_id, ctx)
                if not check.ok:
                    def failed(c: sqlite3.Connection) -> None:
                        Journal.update_step(c, job_id, step.value, verification=check.text)
                        Journal.event(c, job_id, EventKind.VERIFICATION_FAILED.value, step=step.value, message=check.text)
                        Journal.audit(c, job_id, actor.to_dict(), "confirmed_unverified", {"step": step.value, "found": check.text})

                    await self.journal.tx(failed)
                    await self.journal.notify()
                    return await self.get_job(job_id)
                if step == StepName.SECURED_ACCESS:
                    await self._start_propagation(job_id, actor)
                else:
                    await self._finish_guided(job_id, step, actor, StepStatus.DONE, check.text, "confirmed")
        self._wake()
        return await self.get_job(job_id)

    async def _finish_guided(self, job_id: str, step: StepName, actor: Actor, status: StepStatus, message: str, action: str) -> None:
        kind = EventKind.STEP_OVERRIDDEN if status == StepStatus.OVERRIDDEN else EventKind.STEP_SUCCEEDED

        def fn(c: sqlite3.Connection) -> None:
            Journal.update_step(c, job_id, step.value, status=status.value, message=message)
            Journal.update_job(c, job_id, status=JobStatus.RUNNING.value)
            Journal.event(c, job_id, kind.value, step=step.value, message=message, data={"by": actor.to_dict()})
            Journal.audit(c, job_id, actor.to_dict(), action, {"step": step.value, "result": message})

        await self.journal.tx(fn)
        self.forget_agents()
        await self.journal.notify()

    async def _start_propagation(self, job_id: str, actor: Actor) -> None:
        due = time.time() + self.settings.propagation_delay.total_seconds()
        due_text = datetime.fromtimestamp(due, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        message = f"Require secured access confirmed; it takes effect by {due_text}. Until then the old setting applies."

        def fn(c: sqlite3.Connection) -> None:
            Journal.update_step(c, job_id, StepName.SECURED_ACCESS.value, status=StepStatus.PROPAGATING.value, message=message, due_at=due)
            c.execute("INSERT OR IGNORE INTO timers (job_id, kind, due_at) VALUES (?, 'propagation_reminder', ?)", (job_id, due))
            Journal.update_job(c, job_id, status=JobStatus.RUNNING.value)
            Journal.event(c, job_id, EventKind.PROPAGATION_STARTED.value, step=StepName.SECURED_ACCESS.value, message=message,
                          data={"due_at": due, "by": actor.to_dict()})
            Journal.audit(c, job_id, actor.to_dict(), "confirmed", {"step": StepName.SECURED_ACCESS.value, "due_at": due})

        await self.journal.tx(fn)
        await self.journal.notify()

    async def retry(self, job_id: str, actor: Actor) -> JobView:
        def fn(c: sqlite3.Connection) -> None:
            row = Journal.job_row(c, job_id)
            if row is None:
                raise JobStateError(f"There is no setup job {job_id}.")
            if row["status"] != JobStatus.FAILED.value:
                raise JobStateError(f"Only a failed setup can be retried; this one is {row['status'].replace('_', ' ')}.")
            data = json.loads(row["data"])
            for step in Journal.step_rows(c, job_id):
                if step["status"] == StepStatus.FAILED.value:
                    Journal.update_step(c, job_id, step["name"], status=StepStatus.PENDING.value, message="Retrying")
                    if step["name"] == StepName.CLIENT_SECRET.value and data.get("secret_expired"):
                        data["force_new_secret"] = True
                        data["secret_expired"] = False
            Journal.update_job(c, job_id, status=JobStatus.QUEUED.value, data=data)
            Journal.event(c, job_id, EventKind.JOB_STARTED.value, message=f"Retried by {actor.name or actor.id}")
            Journal.audit(c, job_id, actor.to_dict(), "retried")

        await self.journal.tx(fn)
        await self.journal.notify()
        self._wake()
        return await self.get_job(job_id)

    async def renew_secret(self, job_id: str, actor: Actor) -> JobView:
        """The secret was shown but never made it into Copilot Studio (lost, or a crash took it): remove it from the
        app registration and make a new one. The job goes back to the client secret step and then waits, with the
        new secret, for the person to enter it."""
        job = await self.load(job_id)
        if actor.id not in (job.requested_by.id, job.approved_by.id):
            raise NotAuthorizedError("Only the requester or the approver of this setup can make a new client secret.",
                                     action=f"Ask {job.requested_by.name or 'the requester'}.")
        async with await self._locked(job_id):
            steps = {r["name"]: StepStatus(r["status"]) for r in await self.step_rows(job_id)}
            if steps.get(StepName.COPILOT_AUTHENTICATION.value) != StepStatus.WAITING_FOR_OPERATOR:
                raise JobStateError("A new client secret is only made while the setup waits for you to enter one in Copilot Studio.",
                                    action="Refresh the progress card to see where the setup is.")
            if await self.vault.available(job_id):
                raise JobStateError("The client secret has not been shown yet.", action="Select 'Show client secret (once)' on the step's card.")
            old, object_id = job.data.get("secret_key_id"), job.data.get("app_object_id")
            if old and object_id:
                _current_job.set(job_id)
                await self.graph.remove_password(str(object_id), str(old), step=StepName.CLIENT_SECRET.value)

            def fn(c: sqlite3.Connection) -> None:
                row = Journal.job_row(c, job_id)
                data = json.loads(row["data"]) if row is not None else {}
                data.update(force_new_secret=True, secret_key_id=None)
                Journal.update_step(c, job_id, StepName.CLIENT_SECRET.value, status=StepStatus.PENDING.value, message="Making a new client secret")
                Journal.update_step(c, job_id, StepName.COPILOT_AUTHENTICATION.value, status=StepStatus.PENDING.value, message="", verification="")
                Journal.update_job(c, job_id, status=JobStatus.QUEUED.value, data=data)
                Journal.event(c, job_id, EventKind.JOB_STARTED.value, message=f"New client secret requested by {actor.name or actor.id}")
                Journal.audit(c, job_id, actor.to_dict(), "secret_renewed", {"removed_key_id": old})
                self._flush_audit(c, job_id)

            await self.journal.tx(fn)
        await self.journal.notify()
        self._wake()
        return await self.get_job(job_id)

    async def cancel(self, job_id: str, actor: Actor) -> JobView:
        job = await self.load(job_id)
        if job.status.terminal:
            raise JobStateError(f"This setup is already {job.status.value}.")
        object_id = job.data.get("app_object_id")

        def fn(c: sqlite3.Connection) -> str | None:
            key_id = self.vault.destroy(c, job_id)
            Journal.update_job(c, job_id, status=JobStatus.CANCELLED.value)
            for step in Journal.step_rows(c, job_id):
                if not StepStatus(step["status"]).finished:
                    Journal.update_step(c, job_id, step["name"], status=StepStatus.SKIPPED.value, message="Cancelled")
            c.execute("UPDATE timers SET fired_at = ? WHERE job_id = ? AND fired_at IS NULL", (time.time(), job_id))
            Journal.event(c, job_id, EventKind.JOB_CANCELLED.value, message=f"Cancelled by {actor.name or actor.id}")
            Journal.audit(c, job_id, actor.to_dict(), "cancelled", {"removed_unretrieved_secret": key_id})
            return key_id

        key_id = await self.journal.tx(fn)
        await self.journal.notify()
        if key_id and object_id:
            try:
                await self.graph.remove_password(object_id, key_id)
            except MicrosoftApiError as exc:
                log.warning("could not remove the unretrieved secret of cancelled job %s: %s", job_id, exc.code)
        return await self.get_job(job_id)

    async def _requester_only(self, job_id: str, actor: Actor, what: str) -> None:
        job = await self.load(job_id)
        if actor.id != job.requested_by.id:
            raise NotAuthorizedError(f"Only the person who requested this setup can {what} its client secret.",
                                     action=f"Ask {job.requested_by.name or 'the requester'} to do it.")

    async def take_secret(self, job_id: str, actor: Actor) -> str:
        await self._requester_only(job_id, actor, "see")

        def fn(c: sqlite3.Connection) -> str:
            _key_id, text = self.vault.take_in(c, job_id)
            Journal.audit(c, job_id, actor.to_dict(), "secret_retrieved")
            Journal.event(c, job_id, EventKind.SECRET_TAKEN.value, step=StepName.COPILOT_AUTHENTICATION.value, message="The client secret was shown.")
            Journal.update_job(c, job_id)
            return text

        secret = await self.journal.tx(fn)
        await self.journal.notify()
        return secret

    async def use_secret(self, job_id: str, actor: Actor, use: Callable[[str], Awaitable[None]]) -> None:
        """Hand the secret to `use` (the sandbox's emulated Copilot Studio) and destroy the stored copy only after
        `use` succeeded: a crash in between leaves it in the vault, so the step can still be done."""
        await self._requester_only(job_id, actor, "use")
        secret = await self.journal.tx(lambda c: self.vault.peek_in(c, job_id)[1])
        try:
            await use(secret)
        finally:
            del secret

        def fn(c: sqlite3.Connection) -> None:
            self.vault.destroy(c, job_id)
            Journal.audit(c, job_id, actor.to_dict(), "secret_retrieved")
            Journal.event(c, job_id, EventKind.SECRET_TAKEN.value, step=StepName.COPILOT_AUTHENTICATION.value, message="The client secret was entered.")
            Journal.update_job(c, job_id)

        await self.journal.tx(fn)
        await self.journal.notify()

    async def expire_secrets(self) -> None:
        for job_id, key_id in await self.vault.expired():
            await self._expire_secret(job_id, key_id)

    async def _expire_secret(self, job_id: str, key_id: str) -> None:
        """Nobody retrieved the secret in time: destroy it, remove it from the app, and fail the step if it is still needed."""
        job = await self.load(job_id)
        steps = {r["name"]: StepStatus(r["status"]) for r in await self.step_rows(job_id)}
        auth_open = not steps.get(StepName.COPILOT_AUTHENTICATION.value, StepStatus.DONE).finished
        message = ("The client secret was not retrieved within "
                   f"{self.settings.secret_handoff_ttl.total_seconds() / 3600:g} hours, so it was removed from the app registration. "
                   "Retry to make a new one.")

        def fn(c: sqlite3.Connection) -> None:
            self.vault.destroy(c, job_id)
            Journal.update_job(c, job_id, data=dict(job.data) | {"secret_expired": True})
            Journal.event(c, job_id, EventKind.SECRET_EXPIRED.value, step=StepName.CLIENT_SECRET.value, message=message)
            Journal.audit(c, job_id, {"id": "provisioning-service"}, "secret_expired", {"key_id": key_id})
            if auth_open and not job.status.terminal:
                Journal.update_step(c, job_id, StepName.CLIENT_SECRET.value, status=StepStatus.FAILED.value, message=message)
                if steps.get(StepName.COPILOT_AUTHENTICATION.value) == StepStatus.WAITING_FOR_OPERATOR:
                    Journal.update_step(c, job_id, StepName.COPILOT_AUTHENTICATION.value, status=StepStatus.PENDING.value, instructions=None)
                Journal.update_job(c, job_id, status=JobStatus.FAILED.value)

        await self.journal.tx(fn)
        await self.journal.notify()
        if job.data.get("app_object_id"):
            try:
                await self.graph.remove_password(job.data["app_object_id"], key_id)
            except MicrosoftApiError as exc:
                log.warning("could not remove expired secret of job %s: %s", job_id, exc.code)

    async def perform_in_sandbox(self, job_id: str, step: StepName, actor: Actor) -> JobView:
        if self.operator is None:
            raise JobStateError("There is no sandbox: this bot talks to a real tenant.", action="Do the step in Copilot Studio, then select Done.")
        job = await self.load(job_id)
        rows = {r["name"]: StepStatus(r["status"]) for r in await self.step_rows(job_id)}
        if rows.get(step.value) != StepStatus.WAITING_FOR_OPERATOR:
            raise JobStateError(f"'{step.label}' is not waiting for you.", action="Refresh the progress card to see the current state.")
        bot_id = job.agent.bot_id
        if step == StepName.COPILOT_AUTHENTICATION:
            if not await self.vault.available(job_id):
                raise JobStateError("The client secret was already retrieved, so the sandbox cannot enter it for you.",
                                    action="Enter it yourself in the sandbox's emulated Copilot Studio, then select Done; or select 'Make a new client secret'.")
            operator = self.operator

            async def enter(secret: str) -> None:
                await operator.manual_authentication(bot_id, client_id=str(job.data.get("app_id")), client_secret=secret)

            await self.use_secret(job_id, actor, enter)
        elif step == StepName.SECURED_ACCESS:
            await self.operator.enable_secured_access(bot_id)
        elif step == StepName.CUSTOMER_SERVICE_CONNECTION:
            await self.operator.connect_customer_service(bot_id)
        else:
            raise JobStateError(f"'{step.label}' is not a guided step.")
        return await self.confirm_step(job_id, step, actor)

    # ---- views and events -------------------------------------------------------------------------------------

    async def get_job(self, job_id: str) -> JobView:
        job = await self.load(job_id)
        rows = await self.step_rows(job_id)
        available = await self.vault.available(job_id)
        return self._view(job, rows, available)

    def _view(self, job: JobRecord, rows: list[sqlite3.Row], secret_available: bool) -> JobView:
        steps = []
        for r in rows:
            instructions = None
            if r["instructions"] and r["status"] == StepStatus.WAITING_FOR_OPERATOR.value:
                raw = json.loads(r["instructions"])
                instructions = GuidedInstructions(
                    title=raw["title"], steps=tuple(raw["steps"]), values=tuple(tuple(v) for v in raw["values"]),
                    links=tuple(tuple(v) for v in raw["links"]), secret_handoff=raw["secret_handoff"],
                )
            steps.append(StepView(step=StepName(r["name"]), status=StepStatus(r["status"]), message=r["message"], attempts=r["attempts"],
                                  instructions=instructions, verification=r["verification"], outputs=json.loads(r["outputs"]),
                                  due_at=_ts(r["due_at"])))
        return JobView(
            id=job.id, status=job.status, plan_hash=job.plan["hash"], request=job.request, agent=job.agent, steps=tuple(steps),
            requested_by=job.requested_by, approved_by=job.approved_by, created_at=_ts(job.created_at) or datetime.now(timezone.utc),
            updated_at=_ts(job.updated_at) or datetime.now(timezone.utc), secret_available=secret_available, tags=job.tags,
        )

    async def list_jobs(self, tag: tuple[str, str] | None = None) -> list[JobView]:
        rows = await self.journal.tx(lambda c: [r["id"] for r in c.execute("SELECT id, tags FROM jobs ORDER BY created_at")
                                                if tag is None or json.loads(r["tags"]).get(tag[0]) == tag[1]])
        return [await self.get_job(job_id) for job_id in rows]

    async def events_after(self, seq: int, limit: int = 100) -> list[Event]:
        return [
            Event(seq=r["seq"], job_id=r["job_id"], kind=EventKind(r["kind"]), at=_ts(r["at"]) or datetime.now(timezone.utc),
                  step=StepName(r["step"]) if r["step"] else None, message=r["message"], data=json.loads(r["data"]))
            for r in await self.journal.events_after(seq, limit)
        ]

    async def wait_for_events(self, seq: int, timeout: float) -> list[Event]:
        events = await self.events_after(seq)
        if events:
            return events
        try:
            async with self.journal.changed:
                await asyncio.wait_for(self.journal.changed.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        return await self.events_after(seq)

    async def audit_log(self, job_id: str) -> list[dict[str, Any]]:
        rows = await self.journal.tx(lambda c: list(c.execute("SELECT * FROM audit WHERE job_id = ? ORDER BY id", (job_id,))))
        return [{"at": r["at"], "actor": json.loads(r["actor"]), "action": r["action"], "detail": json.loads(r["detail"])} for r in rows]


__all__ = ["ProvisioningService"]
