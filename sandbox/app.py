"""The sandbox: Entra, Graph, one Dataverse per environment and the operator endpoint, each on its own
HTTPS origin on 127.0.0.1, sharing one durable store."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from aiohttp import web

from . import schema
from .dataverse import Environment, sync_status
from .entra import Entra
from .faults import FaultInjector, FaultSettings
from .graph import Graph
from .identity import GRAPH_RESOURCE, Identities
from .operator import Operator
from .store import Store
from .tls import ensure_certificates, server_context

# The Bot Connector: a bot asks Entra for a token to this resource to post its replies
BOT_FRAMEWORK_RESOURCE = "https://api.botframework.com"

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
DEFAULT_CLIENT_NAME = "Copilot Setup Bot provisioning (sandbox)"

SEED_AGENTS: dict[str, list[dict[str, Any]]] = {
    "contoso": [
        {"name": "Contoso Support", "schemaname": "cr6a1_contosoSupport"},
        {"name": "Contoso Returns and Warranty Claims Assistant", "schemaname": "cr6a1_contosoReturnsWarranty"},
        {"name": "Contoso HR Helpdesk", "schemaname": "cr6a1_contosoHrHelpdesk", "set_up": True},
    ],
    "fabrikam": [{"name": "Fabrikam Service Desk", "schemaname": "cr7b2_fabrikamServiceDesk"}],
}


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


def _now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Sandbox:
    """Start with `await start()`; `env` then holds the configuration a client needs."""

    def __init__(self, options: SandboxOptions | None = None) -> None:
        self.options = options or SandboxOptions()
        self.store = Store(self.options.state_path)
        self.identities = Identities(self.store)
        self.faults = FaultInjector(self.options.faults)
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
        tenant_id = meta["tenant_id"]
        self.entra = Entra(tenant_id=tenant_id, identities=self.identities, key_pem=meta["key_pem"].encode(), resources=[GRAPH_RESOURCE, BOT_FRAMEWORK_RESOURCE])
        self.graph = Graph(
            store=self.store, entra=self.entra, faults=self.faults,
            publisher_domain="contoso.onmicrosoft.com", max_password_lifetime=self.options.max_password_lifetime,
        )
        for name in self.options.environments:
            env = Environment(name=name, store=self.store, entra=self.entra, identities=self.identities, faults=self.faults)
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
            await self._seed()
        secret = await self.identities.rotate_secret(meta["client_id"])

        self.entra.base_url = await self._serve(self.entra.routes(), ssl_ctx, self.options.authority_port)
        self.graph.base_url = await self._serve(self.graph.routes(), ssl_ctx, self.options.graph_port)
        ports = (list(self.options.dataverse_ports) + [0] * len(self.environments))[: len(self.environments)]
        for env, port in zip(self.environments.values(), ports, strict=True):
            env.origin = await self._serve(env.routes(), ssl_ctx, port)
            self.entra.resources.append(env.origin)
        operator_url = await self._serve(Operator(self).routes(), ssl_ctx, self.options.operator_port)
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
        }
        log.info("sandbox started: authority %s, graph %s, dataverse %s, operator %s",
                 self.entra.base_url, self.graph.base_url, self.env["DATAVERSE_URL"], operator_url)

    async def _serve(self, routes: list[web.RouteDef], ssl_ctx: Any, port: int) -> str:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.add_routes(routes)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, HOST, port, ssl_context=ssl_ctx)
        await site.start()
        self._runners.append(runner)
        bound = runner.addresses[-1][1]
        return f"https://{HOST}:{bound}"

    async def stop(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()
        await self.store.close()

    async def set_faults(self, settings: FaultSettings) -> None:
        self.faults.update(settings)

    @property
    def url(self) -> str:
        return self.env["SANDBOX_URL"]

    async def _seed(self) -> None:
        for name in self.options.environments:
            org = {"organizationid": str(uuid.uuid4()), "name": name, "_business_unit": str(uuid.uuid4())}
            await self.store.put("organization", name, org)
            ws_id = str(uuid.uuid4())
            await self.store.put("workstream", ws_id, {
                "msdyn_liveworkstreamid": ws_id, "msdyn_name": f"{name.title()} chat workstream",
                "_msdyn_bot_user_value": None, "msdyn_bothandle": None, "_env": name,
            })
            for agent in SEED_AGENTS.get(name, [{"name": f"{name.title()} Agent", "schemaname": f"cr0_{name}Agent"}]):
                await self._seed_bot(name, agent)
        await self.store.put("meta", "seeded", {"at": _now_iso()})

    async def _seed_bot(self, env: str, agent: dict[str, Any]) -> None:
        bot_id = str(uuid.uuid4())
        registration = str(uuid.uuid4())
        set_up = bool(agent.get("set_up"))
        published = _now_iso()
        mode = 3 if set_up else 2
        bot = {
            "botid": bot_id, "name": agent["name"], "schemaname": agent["schemaname"],
            "authenticationmode": mode, "authenticationtrigger": 1 if set_up else 0, "accesscontrolpolicy": 0,
            "authenticationconfiguration": json.dumps({"$kind": "BotAuthenticationConfiguration", "connectionName": str(uuid.uuid4())}) if set_up else None,
            "configuration": json.dumps({"$kind": "BotConfiguration", "channels": [{"$kind": "ChannelDefinition", "channelId": "MsTeams"}]}),
            "synchronizationstatus": sync_status(mode, registration, published),
            "publishedon": published, "statecode": 0, "statuscode": 1, "ismanaged": False, "language": 1033,
            "createdon": published, "modifiedon": published, "versionnumber": 1,
            "_env": env, "_registration_app_id": registration, "_publish_due": None, "_published_auth_mode": mode,
        }
        await self.store.put("bot", bot_id, bot)
        if set_up:
            user_id = str(uuid.uuid4())
            await self.store.put("systemuser", user_id, {
                "systemuserid": user_id, "fullname": agent["name"], "applicationid": registration, "isdisabled": False,
                "accessmode": 4, "msdyn_agentType": 192350001, "msdyn_botprovider": 192350000,
                "msdyn_botapplicationid": registration, "msdyn_bothandle": agent["schemaname"], "msdyn_usertype": 192350001,
                "msdyn_owningenvironmentid": env, "azureactivedirectoryobjectid": None, "_env": env,
            })

    async def snapshot(self) -> dict[str, Any]:
        """What the tenant holds, for tests and people; never a secret or its hash."""
        def strip(doc: dict[str, Any]) -> dict[str, Any]:
            out = {k: v for k, v in doc.items() if not k.startswith("_")}
            if "passwordCredentials" in out:
                out["passwordCredentials"] = [{k: v for k, v in p.items() if not k.startswith("_")} for p in out["passwordCredentials"]]
            return out

        apps = []
        for a in self.store.all("application"):
            doc = strip(a)
            doc["owner"] = a.get("_owner")
            apps.append(doc)
        envs = {}
        for name, env in self.environments.items():
            bots = []
            for b in await env.bots():
                doc = strip(b)
                doc["registration_application_id"] = b["_registration_app_id"]
                doc["secured_access"] = self.store.get("secured_access", b["botid"])
                bots.append(doc)
            envs[name] = {
                "url": env.origin,
                "organization_id": self.store.get("organization", name)["organizationid"],  # type: ignore[index]
                "bots": bots,
                "bot_application_users": [strip(u) for u in env.systemusers() if u.get("msdyn_agentType") == 192350001],
                "workstreams": [strip(w) | {"_msdyn_bot_user_value": w.get("_msdyn_bot_user_value")} for w in self.store.all("workstream") if w["_env"] == name],
            }
        return {
            "tenant_id": self.entra.tenant_id if self.entra else None,
            "applications": apps,
            "service_principals": [strip(sp) for sp in self.store.all("service_principal")],
            "environments": envs,
            "faults": self.faults.settings.to_dict(),
        }
