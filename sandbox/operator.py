"""The operator endpoint (`SANDBOX_URL/_sandbox/...`): what a person does in portals that have no API,
plus test controls.

- `POST /_sandbox/clients`: register another app-only identity (tests use less-privileged ones)
- `GET|PUT /_sandbox/faults`: read or change the fault settings
- `GET /_sandbox/state`: what the tenant holds (never a secret)
- `POST /_sandbox/bots/{botid}/manual-authentication`: Copilot Studio "Authenticate manually"
- `GET|POST /_sandbox/bots/{botid}/secured-access`: web channel "Require secured access"
- `POST /_sandbox/bots/{botid}/customer-service-connection`: the Customer Service "Connect" button
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .faults import FaultSettings
from .identity import verify_secret

if TYPE_CHECKING:
    from .app import Sandbox


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _problem(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


class Operator:
    def __init__(self, sandbox: "Sandbox") -> None:
        self.sb = sandbox

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_sandbox/healthz", self.healthz),
            web.post("/_sandbox/clients", self.create_client),
            web.get("/_sandbox/faults", self.get_faults),
            web.put("/_sandbox/faults", self.put_faults),
            web.get("/_sandbox/state", self.state),
            web.post("/_sandbox/bots/{botid}/manual-authentication", self.manual_authentication),
            web.get("/_sandbox/bots/{botid}/secured-access", self.get_secured_access),
            web.post("/_sandbox/bots/{botid}/secured-access", self.secured_access),
            web.post("/_sandbox/bots/{botid}/customer-service-connection", self.connect_customer_service),
        ]

    async def _json(self, request: web.Request) -> dict[str, Any]:
        try:
            data = json.loads(await request.text() or "{}")
        except json.JSONDecodeError as exc:
            raise web.HTTPBadRequest(text=json.dumps({"error": f"body is not JSON: {exc}"}), content_type="application/json") from None
        if not isinstance(data, dict):
            raise web.HTTPBadRequest(text=json.dumps({"error": "body must be a JSON object"}), content_type="application/json")
        return data

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def create_client(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        by_origin = {env.origin: name for name, env in self.sb.environments.items()}
        dataverse_roles: dict[str, list[str]] = {}
        for origin, roles in (body.get("dataverse_roles") or {}).items():
            name = by_origin.get(origin.rstrip("/"), origin if origin in self.sb.environments else None)
            if name is None:
                return _problem(400, f"unknown environment {origin!r}; known: {sorted(by_origin)}")
            dataverse_roles[name] = list(roles)
        try:
            client, secret = await self.sb.identities.create(
                str(body.get("display_name") or "sandbox test client"), list(body.get("roles") or []), dataverse_roles
            )
        except ValueError as exc:
            return _problem(400, str(exc))
        return web.json_response({"client_id": client.client_id, "client_secret": secret}, status=201)

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.sb.faults.settings.to_dict())

    async def put_faults(self, request: web.Request) -> web.Response:
        try:
            settings = FaultSettings.from_dict(await self._json(request), self.sb.faults.settings)
        except (ValueError, TypeError) as exc:
            return _problem(400, str(exc))
        self.sb.faults.update(settings)
        return web.json_response(settings.to_dict())

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(await self.sb.snapshot())

    async def _bot(self, request: web.Request) -> tuple[Any, dict[str, Any]]:
        bot_id = request.match_info["botid"].lower()
        for env in self.sb.environments.values():
            bot = await env.bot(bot_id)
            if bot is not None:
                return env, bot
        raise web.HTTPNotFound(text=json.dumps({"error": f"no agent with bot id {bot_id}"}), content_type="application/json")

    async def manual_authentication(self, request: web.Request) -> web.Response:
        env, bot = await self._bot(request)
        body = await self._json(request)
        client_id = str(body.get("client_id", "")).strip()
        secret = str(body.get("client_secret", ""))
        scopes = str(body.get("scopes", "profile openid"))
        app = next((a for a in self.sb.store.all("application") if a["appId"] == client_id), None)
        if app is None:
            return _problem(400, f"No app registration has the client ID {client_id!r}. Copy the Application (client) ID from the app registration's Overview page.")
        now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        if not any(verify_secret(secret, p["_hash"]) and p["endDateTime"] > now for p in app.get("passwordCredentials", [])):
            return _problem(400, "That client secret is not a valid, unexpired secret of this app registration. Paste the secret value, not its ID.")
        if "openid" not in scopes.split() or "profile" not in scopes.split():
            return _problem(400, "Scopes must include 'profile openid'.")
        bot["authenticationmode"] = 3
        bot["authenticationtrigger"] = 1
        bot["authenticationconfiguration"] = json.dumps({"$kind": "BotAuthenticationConfiguration", "connectionName": str(uuid.uuid4())})
        bot["_auth_client_id"] = client_id
        bot["versionnumber"] += 1
        await self.sb.store.put("bot", bot["botid"], bot)
        return web.json_response({"botid": bot["botid"], "authenticationmode": 3, "published": False,
                                  "note": "Changes take effect after the agent is published."})

    def _secured_view(self, bot_id: str) -> dict[str, Any]:
        rec = self.sb.store.get("secured_access", bot_id) or {}
        requested = rec.get("requested_at")
        delay = self.sb.options.propagation_delay.total_seconds()
        effective = requested + delay if requested else None
        return {
            "enabled": bool(rec.get("enabled")),
            "requested_at": _iso(requested) if requested else None,
            "effective_at": _iso(effective) if effective else None,
            "in_effect": bool(rec.get("enabled")) and effective is not None and time.time() >= effective,
            "propagation_delay_s": delay,
        }

    async def get_secured_access(self, request: web.Request) -> web.Response:
        _env, bot = await self._bot(request)
        return web.json_response(self._secured_view(bot["botid"]))

    async def secured_access(self, request: web.Request) -> web.Response:
        _env, bot = await self._bot(request)
        body = await self._json(request)
        enabled = bool(body.get("enabled", True))
        current = self.sb.store.get("secured_access", bot["botid"]) or {}
        if bool(current.get("enabled")) != enabled or not current:
            await self.sb.store.put("secured_access", bot["botid"], {"enabled": enabled, "requested_at": time.time()})
        return web.json_response(self._secured_view(bot["botid"]))

    async def connect_customer_service(self, request: web.Request) -> web.Response:
        env, bot = await self._bot(request)
        if len(bot["name"]) > 30:
            return _problem(
                400,
                f"Copilot Studio agents with names longer than 30 characters can't connect to Dynamics 365 Customer Service "
                f"('{bot['name']}' has {len(bot['name'])}). Rename the agent, then connect again.",
            )
        app_id = bot["_registration_app_id"]
        existing = [u for u in env.systemusers() if u.get("msdyn_botapplicationid") == app_id]
        if not existing:
            user = {
                "systemuserid": str(uuid.uuid4()), "fullname": bot["name"], "applicationid": app_id, "isdisabled": False,
                "accessmode": 4, "msdyn_agentType": 192350001, "msdyn_botprovider": 192350000,
                "msdyn_botapplicationid": app_id, "msdyn_bothandle": bot["schemaname"], "msdyn_usertype": 192350001,
                "msdyn_owningenvironmentid": env.name, "azureactivedirectoryobjectid": None, "_env": env.name,
            }
            await self.sb.store.put("systemuser", user["systemuserid"], user)
        return web.json_response({"connected": True, "msdyn_botapplicationid": app_id})

