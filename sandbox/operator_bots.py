"""Operator endpoint, agents: the Copilot Studio and Customer Service steps that have no API, done the way
the portal does them, and the portal edits that undo them (drift for day-two tests).

- `POST /_sandbox/bots`: a new agent (optionally the child of another, for publish order)
- `POST /_sandbox/bots/{botid}/manual-authentication`: "Authenticate manually", Entra ID V2 with client secrets
- `POST /_sandbox/bots/{botid}/federated-authentication`: Entra ID V2 with federated credentials, client and
  tenant id entered; answers the issuer and value Copilot Studio shows
- `POST /_sandbox/bots/{botid}/federated-authentication/save`: Save on that page
- `GET|POST /_sandbox/bots/{botid}/authentication`: what the page shows / switch to another mode (drift)
- `GET|POST /_sandbox/bots/{botid}/secured-access`: web channel "Require secured access"
- `POST|DELETE /_sandbox/bots/{botid}/customer-service-connection`: Customer Service Connect / disconnect
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .copilot_studio import (
    FEDERATED,
    SECRET,
    authentication_view,
    federated_pair,
    set_custom_authentication,
    set_other_authentication,
)
from .graph_credentials import TOKEN_EXCHANGE_AUDIENCE
from .identity import verify_secret
from .operator_base import find_application, find_bot, problem, read_json
from .seed import bot_application_user, new_bot

if TYPE_CHECKING:
    from .app import Sandbox

GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


class BotSteps:
    def __init__(self, sandbox: "Sandbox") -> None:
        self.sb = sandbox

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/_sandbox/bots", self.create_bot),
            web.post("/_sandbox/bots/{botid}/manual-authentication", self.manual_authentication),
            web.post("/_sandbox/bots/{botid}/federated-authentication", self.federated_authentication),
            web.post("/_sandbox/bots/{botid}/federated-authentication/save", self.save_federated_authentication),
            web.get("/_sandbox/bots/{botid}/authentication", self.get_authentication),
            web.post("/_sandbox/bots/{botid}/authentication", self.switch_authentication),
            web.get("/_sandbox/bots/{botid}/secured-access", self.get_secured_access),
            web.post("/_sandbox/bots/{botid}/secured-access", self.secured_access),
            web.post("/_sandbox/bots/{botid}/customer-service-connection", self.connect_customer_service),
            web.delete("/_sandbox/bots/{botid}/customer-service-connection", self.disconnect_customer_service),
        ]

    async def create_bot(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        env_name = str(body.get("environment") or next(iter(self.sb.environments)))
        env = self.sb.environments.get(env_name)
        if env is None:
            return problem(400, f"unknown environment {env_name!r}; known: {sorted(self.sb.environments)}")
        name, schemaname = str(body.get("name") or "").strip(), str(body.get("schemaname") or "").strip()
        if not name or not schemaname or len(name) > 100 or not re.fullmatch(r"[A-Za-z0-9_]{1,100}", schemaname):
            return problem(400, "name (≤ 100 characters) and schemaname (letters, digits, _) are required")
        if any(b["schemaname"] == schemaname for b in self.sb.store.all("bot")):
            return problem(409, f"an agent with schema name {schemaname!r} exists already")
        parent = body.get("parent_botid")
        if parent is not None:
            _env, parent_bot = await find_bot(self.sb, str(parent))
            parent = parent_bot["botid"]
        bot = new_bot(env.name, name, schemaname, self.sb.clock.iso(), published=bool(body.get("published", False)), parent_botid=parent)
        await self.sb.store.put("bot", bot["botid"], bot)
        return web.json_response({"botid": bot["botid"], "environment": env.name, "parent_botid": parent}, status=201)

    async def manual_authentication(self, request: web.Request) -> web.Response:
        _env, bot = await find_bot(self.sb, request.match_info["botid"])
        body = await read_json(request)
        client_id = str(body.get("client_id", "")).strip()
        secret = str(body.get("client_secret", ""))
        scopes = str(body.get("scopes", "profile openid"))
        app = find_application(self.sb, client_id)
        if app is None:
            return problem(400, f"No app registration has the client ID {client_id!r}. Copy the Application (client) ID from the app registration's Overview page.")
        now = self.sb.clock.iso()
        if not any(verify_secret(secret, p["_hash"]) and p["startDateTime"] <= now < p["endDateTime"] for p in app.get("passwordCredentials", [])):
            return problem(400, "That client secret is not a valid, unexpired secret of this app registration. Paste the secret value, not its ID.")
        if "openid" not in scopes.split() or "profile" not in scopes.split():
            return problem(400, "Scopes must include 'profile openid'.")
        set_custom_authentication(bot, SECRET, client_id)
        await self.sb.store.put("bot", bot["botid"], bot)
        return web.json_response({"botid": bot["botid"], "authenticationmode": 3, "published": False,
                                  "note": "Changes take effect after the agent is published."})

    async def federated_authentication(self, request: web.Request) -> web.Response:
        env, bot = await find_bot(self.sb, request.match_info["botid"])
        body = await read_json(request)
        client_id, tenant_id = str(body.get("client_id", "")).strip(), str(body.get("tenant_id", "")).strip().lower()
        if find_application(self.sb, client_id) is None:
            return problem(400, f"No app registration has the client ID {client_id!r}. Copy the Application (client) ID from the app registration's Overview page.")
        assert self.sb.entra is not None
        if not GUID.match(tenant_id) or tenant_id != self.sb.entra.tenant_id:
            return problem(400, f"The tenant ID {tenant_id!r} is not the Directory (tenant) ID of this tenant ({self.sb.entra.tenant_id}). "
                                "Copy it from the app registration's Overview page.")
        org = self.sb.store.get("organization", env.name) or {}
        pair = await federated_pair(self.sb.store, self.sb.entra.base_url, str(org.get("organizationid")), bot["botid"], tenant_id)
        bot["_auth_pending"] = {"client_id": client_id, "tenant_id": tenant_id} | pair
        await self.sb.store.put("bot", bot["botid"], bot)
        return web.json_response(pair | {"audience": TOKEN_EXCHANGE_AUDIENCE,
                                         "note": "Add a federated credential with this issuer and value to the app registration, then Save."})

    async def save_federated_authentication(self, request: web.Request) -> web.Response:
        _env, bot = await find_bot(self.sb, request.match_info["botid"])
        pending: dict[str, Any] | None = bot.get("_auth_pending")
        if not pending:
            return problem(400, "Choose 'Microsoft Entra ID V2 with federated credentials' and enter the client ID and tenant ID first.")
        app = find_application(self.sb, pending["client_id"])
        if app is None:
            return problem(400, f"The app registration with client ID {pending['client_id']} no longer exists.")
        assert self.sb.graph is not None
        visible = [c for c in app.get("_federated", []) if not self.sb.graph.replicating(c.get("_created"))]
        if not any(c["issuer"] == pending["issuer"] and c["subject"] == pending["subject"] and c["audiences"] == [TOKEN_EXCHANGE_AUDIENCE]
                   for c in visible):
            return problem(400, f"The app registration {pending['client_id']} has no federated credential with issuer {pending['issuer']}, "
                                f"value (subject) {pending['subject']} and audience {TOKEN_EXCHANGE_AUDIENCE}. In Entra: Certificates & secrets → "
                                "Federated credentials → Add credential → Other issuer; if you just added it, wait a moment and Save again.")
        set_custom_authentication(bot, FEDERATED, pending["client_id"],
                                  {k: pending[k] for k in ("tenant_id", "issuer", "subject")})
        bot["_auth_pending"] = None
        await self.sb.store.put("bot", bot["botid"], bot)
        return web.json_response(authentication_view(bot) | {"note": "Changes take effect after the agent is published."})

    async def get_authentication(self, request: web.Request) -> web.Response:
        _env, bot = await find_bot(self.sb, request.match_info["botid"])
        return web.json_response(authentication_view(bot))

    async def switch_authentication(self, request: web.Request) -> web.Response:
        _env, bot = await find_bot(self.sb, request.match_info["botid"])
        mode = (await read_json(request)).get("mode")
        if not isinstance(mode, int) or isinstance(mode, bool) or mode not in (0, 1, 2, 4):
            return problem(400, "mode must be 0, 1, 2 or 4 (for 3 use manual-authentication or federated-authentication)")
        set_other_authentication(bot, mode)
        await self.sb.store.put("bot", bot["botid"], bot)
        return web.json_response(authentication_view(bot))

    # ---- web channel security ----------------------------------------------------------------------------

    def secured_view(self, bot_id: str) -> dict[str, Any]:
        rec = self.sb.store.get("secured_access", bot_id) or {}
        requested = rec.get("requested_at")
        delay = self.sb.options.propagation_delay.total_seconds()
        effective = requested + delay if requested else None
        return {
            "enabled": bool(rec.get("enabled")),
            "requested_at": self.sb.clock.iso(requested) if requested else None,
            "effective_at": self.sb.clock.iso(effective) if effective else None,
            "in_effect": bool(rec.get("enabled")) and effective is not None and self.sb.clock.now() >= effective,
            "propagation_delay_s": delay,
        }

    async def get_secured_access(self, request: web.Request) -> web.Response:
        _env, bot = await find_bot(self.sb, request.match_info["botid"])
        return web.json_response(self.secured_view(bot["botid"]))

    async def secured_access(self, request: web.Request) -> web.Response:
        _env, bot = await find_bot(self.sb, request.match_info["botid"])
        enabled = bool((await read_json(request)).get("enabled", True))
        current = self.sb.store.get("secured_access", bot["botid"]) or {}
        if bool(current.get("enabled")) != enabled or not current:
            await self.sb.store.put("secured_access", bot["botid"], {"enabled": enabled, "requested_at": self.sb.clock.now()})
        return web.json_response(self.secured_view(bot["botid"]))

    # ---- Customer Service --------------------------------------------------------------------------------

    async def connect_customer_service(self, request: web.Request) -> web.Response:
        env, bot = await find_bot(self.sb, request.match_info["botid"])
        if len(bot["name"]) > 30:
            return problem(
                400,
                f"Copilot Studio agents with names longer than 30 characters can't connect to Dynamics 365 Customer Service "
                f"('{bot['name']}' has {len(bot['name'])}). Rename the agent, then connect again.",
            )
        app_id = bot["_registration_app_id"]
        if not any(u.get("msdyn_botapplicationid") == app_id for u in env.systemusers()):
            user = bot_application_user(env.name, bot)
            await self.sb.store.put("systemuser", user["systemuserid"], user)
        return web.json_response({"connected": True, "msdyn_botapplicationid": app_id})

    async def disconnect_customer_service(self, request: web.Request) -> web.Response:
        """Disconnect in the Customer Service channel page: the bot application user goes, and workstreams lose it."""
        env, bot = await find_bot(self.sb, request.match_info["botid"])
        app_id = bot["_registration_app_id"]
        users = [u for u in env.systemusers() if u.get("msdyn_botapplicationid") == app_id and u.get("msdyn_agentType") == 192350001]
        for user in users:
            await self.sb.store.delete("systemuser", user["systemuserid"])
            for ws in self.sb.store.all("workstream"):
                if ws.get("_msdyn_bot_user_value") == user["systemuserid"]:
                    ws["_msdyn_bot_user_value"] = None
                    await self.sb.store.put("workstream", ws["msdyn_liveworkstreamid"], ws)
        return web.json_response({"connected": False, "msdyn_botapplicationid": app_id, "removed_users": len(users)})
