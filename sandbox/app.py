"""The sandbox: Entra, Graph, one Dataverse per environment and the operator endpoint, each on its own
HTTPS origin on 127.0.0.1, sharing one durable store; and a plain-HTTP read-only portal for people."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

from . import schema
from .clock import CLOCK, Clock, stamp_date
from .dataverse import Environment
from .entra import Entra
from .faults import FaultInjector, FaultSettings
from .graph import Graph
from .identity import GRAPH_RESOURCE, Identities
from .operator import Operator
from .policy import TenantPolicy
from .portal import Portal
from .seed import seed
from .snapshot import snapshot
from .store import Store
from .tls import ensure_certificates, server_context

# The Bot Connector: a bot asks Entra for a token to this resource to post its replies
BOT_FRAMEWORK_RESOURCE = "https://api.botframework.com"

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_CLIENT_NAME = "Copilot Setup Bot provisioning (sandbox)"


@dataclass
class SandboxOptions:
    state_path: Path = Path("data/sandbox.db")
    cert_dir: Path = Path("data/sandbox-certs")
    faults: FaultSettings = field(default_factory=FaultSettings)
    propagation_delay: timedelta = timedelta(hours=2)
    publish_duration: timedelta = timedelta(seconds=2)
    max_password_lifetime: str | None = "P365D"
    environments: tuple[str, ...] = ("contoso", "fabrikam")
    authority_port: int = 0
    graph_port: int = 0
    dataverse_ports: tuple[int, ...] = ()
    operator_port: int = 0
    block_password_addition: bool = False  # tenant app-management policy: no new client secrets
    portal_port: int = 0  # the plain-HTTP read-only portal pages


class Sandbox:
    """Start with `await start()`; `env` then holds the configuration a client needs."""

    def __init__(self, options: SandboxOptions | None = None) -> None:
        self.options = options or SandboxOptions()
        self.store = Store(self.options.state_path)
        self.identities = Identities(self.store)
        self.faults = FaultInjector(self.options.faults)
        self.clock = Clock()
        self.policy = TenantPolicy(
            max_password_lifetime=self.options.max_password_lifetime,
            block_password_addition=self.options.block_password_addition,
        )
        self.environments: dict[str, Environment] = {}
        self.env: dict[str, str] = {}
        self._runners: list[web.AppRunner] = []
        self.entra: Entra | None = None
        self.graph: Graph | None = None

    async def start(self) -> None:
        await self.store.open()
        ca, cert, key = await asyncio.to_thread(ensure_certificates, self.options.cert_dir)
        await asyncio.to_thread(schema.load)
        ssl_ctx = await asyncio.to_thread(server_context, cert, key)
        meta = self.store.get("meta", "tenant")
        if meta is None:
            meta = {
                "tenant_id": str(uuid.uuid4()),
                "key_pem": (await asyncio.to_thread(Entra.new_key_pem)).decode(),
                "client_id": str(uuid.uuid4()),
            }
            await self.store.put("meta", "tenant", meta)
        self.clock.set_offset(float((self.store.get("meta", "clock") or {}).get("offset_s", 0.0)))
        tenant_id = meta["tenant_id"]
        self.entra = Entra(tenant_id=tenant_id, identities=self.identities, key_pem=meta["key_pem"].encode(), resources=[GRAPH_RESOURCE, BOT_FRAMEWORK_RESOURCE])
        self.graph = Graph(
            store=self.store, entra=self.entra, faults=self.faults,
            publisher_domain="contoso.onmicrosoft.com", policy=self.policy, clock=self.clock,
        )
        for name in self.options.environments:
            env = Environment(name=name, store=self.store, entra=self.entra, identities=self.identities, faults=self.faults, clock=self.clock)
            env.publish_duration = self.options.publish_duration.total_seconds()
            self.environments[name] = env
        if self.identities.get(meta["client_id"]) is None:
            await self.identities.create(
                DEFAULT_CLIENT_NAME,
                ["Application.ReadWrite.OwnedBy", "Policy.Read.All"],
                {name: ["System Administrator"] for name in self.options.environments},
                client_id=meta["client_id"],
            )
        if self.store.get("meta", "seeded") is None:
            await seed(self.store, self.options.environments, self.clock.iso())
        secret = await self.identities.rotate_secret(meta["client_id"])

        # Entra keeps real time in its answers: tokens are issued and checked on real time (see clock.py).
        self.entra.base_url = await self._serve(self.entra.routes(), ssl_ctx, self.options.authority_port, dated=False)
        self.graph.base_url = await self._serve(self.graph.routes(), ssl_ctx, self.options.graph_port)
        ports = (list(self.options.dataverse_ports) + [0] * len(self.environments))[: len(self.environments)]
        for env, port in zip(self.environments.values(), ports, strict=True):
            env.origin = await self._serve(env.routes(), ssl_ctx, port)
            self.entra.resources.append(env.origin)
        operator_url = await self._serve(Operator(self).routes(), ssl_ctx, self.options.operator_port)
        portal_url = await self._serve(Portal(self).routes(), None, self.options.portal_port)
        self.env = {
            "AZURE_AUTHORITY_HOST": self.entra.base_url,
            "GRAPH_ENDPOINT": self.graph.base_url,
            "DATAVERSE_URL": ",".join(env.origin for env in self.environments.values()),
            "PROVISIONING_TENANT_ID": tenant_id,
            "PROVISIONING_CLIENT_ID": meta["client_id"],
            "PROVISIONING_CLIENT_SECRET": secret,
            "SSL_CERT_FILE": str(ca.resolve()),
            "REQUESTS_CA_BUNDLE": str(ca.resolve()),
            "SANDBOX_URL": operator_url,
            "SANDBOX_PORTAL_URL": portal_url,
        }
        log.info("sandbox started: authority %s, graph %s, dataverse %s, operator %s, portal %s",
                 self.entra.base_url, self.graph.base_url, self.env["DATAVERSE_URL"], operator_url, portal_url)

    async def _serve(self, routes: list[web.RouteDef], ssl_ctx: Any, port: int, *, dated: bool = True) -> str:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.add_routes(routes)
        if dated:
            app[CLOCK] = self.clock
            app.on_response_prepare.append(stamp_date)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, HOST, port, ssl_context=ssl_ctx)
        await site.start()
        self._runners.append(runner)
        bound = runner.addresses[-1][1]
        return f"{'https' if ssl_ctx else 'http'}://{HOST}:{bound}"

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        await self.store.close()

    async def set_faults(self, settings: FaultSettings) -> None:
        self.faults.update(settings)

    async def set_clock_offset(self, offset_s: float) -> None:
        self.clock.set_offset(offset_s)
        await self.store.put("meta", "clock", {"offset_s": self.clock.offset_s})

    @property
    def url(self) -> str:
        return self.env["SANDBOX_URL"]

    async def snapshot(self) -> dict[str, Any]:
        """What the tenant holds, for tests and people; never a secret or its hash."""
        return await snapshot(self)
