"""The Dataverse Web API v9.2 of one emulated environment: bots (Copilot Studio agents), PvaPublish,
systemusers, live workstreams, WhoAmI and organizations.

Each environment is its own HTTPS origin, as in Microsoft's cloud; the token audience must be that
origin. The caller must be an application user of the environment, and writes need a role that has
the privilege. Publishing completes after a delay, computed on read, so no background task is needed
and a restarted sandbox finishes what was in flight.
"""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from .clock import Clock
from .entra import Entra, InvalidToken
from .errors import dataverse_error
from .faults import FaultInjector
from .identity import Identities
from .store import Store

API = "/api/data/v9.2/"
BOT_COLUMNS = (
    "botid", "name", "schemaname", "authenticationmode", "authenticationtrigger", "accesscontrolpolicy",
    "authenticationconfiguration", "configuration", "synchronizationstatus", "publishedon", "statecode", "statuscode",
    "ismanaged", "language", "createdon", "modifiedon", "versionnumber",
)
BOT_WRITABLE = {"name", "authenticationmode", "authenticationtrigger", "accesscontrolpolicy", "authenticationconfiguration", "configuration"}
SYSTEMUSER_COLUMNS = (
    "systemuserid", "fullname", "applicationid", "isdisabled", "accessmode", "msdyn_agentType", "msdyn_botprovider",
    "msdyn_botapplicationid", "msdyn_bothandle", "msdyn_usertype", "msdyn_owningenvironmentid", "azureactivedirectoryobjectid",
)
WRITE_ROLES = {"System Administrator", "System Customizer"}
AUTH_MODE_NAMES = {0: "Unspecified", 1: "None", 2: "Integrated", 3: "CustomAzureActiveDirectory", 4: "GenericOAuth2"}
_ITEM = re.compile(r"^(?P<set>\w+)\((?P<id>[0-9a-fA-F-]{36})\)(?:/(?P<action>[\w.]+))?$")
_CLAUSE = re.compile(r"^\s*(?P<prop>\w+)\s+eq\s+(?:'(?P<s>(?:[^']|'')*)'|(?P<n>-?\d+)|(?P<b>true|false)|(?P<g>[0-9a-fA-F-]{36}))\s*$", re.I)


def sync_status(
    auth_mode: int, app_id: str, published: str | None, started: str | None = None, ended: str | None = None, *, now: str = "",
) -> str:
    """The bot's `synchronizationstatus` memo (microsoft-apis.md §9); `now` stands in while it was never published."""
    doc: dict[str, Any] = {
        "$kind": "BotSynchronizationDetails",
        "contentVersion": 2,
        "currentSynchronizationState": {
            "$kind": "SynchronizationState",
            "botRegistration": {
                "$kind": "BotRegistrationDetails",
                "botRegistrationIdConsumptionTime": published or now,
                "applicationId": app_id,
                "isAppAvailableInTenant": True,
            },
            "provisioningStatus": "Provisioned",
            "state": "Synchronized",
        },
        "lastSynchronizedOnUtc": published or now,
    }
    if published:
        doc["lastFinishedPublishOperation"] = {
            "$kind": "PublishResultDetails", "operationStart": started or published, "operationEnd": ended or published,
            "status": "Succeeded",
        }
        doc["lastPublishedDetails"] = {"$kind": "SuccessfulPublishResultDetails", "authenticationMode": AUTH_MODE_NAMES.get(auth_mode, "None")}
        doc["lastPublishedOnUtc"] = published
    return json.dumps(doc)


class Environment:
    """One emulated Dataverse environment."""

    def __init__(
        self, *, name: str, store: Store, entra: Entra, identities: Identities, faults: FaultInjector, clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.clock = clock or Clock()
        self.store = store
        self.entra = entra
        self.identities = identities
        self.faults = faults
        self.origin = ""  # https://127.0.0.1:<port>, set once listening
        self._lock = asyncio.Lock()

    # ---- state ---------------------------------------------------------------------------------------

    async def bots(self) -> list[dict[str, Any]]:
        return [await self.settle(b) for b in self.store.all("bot") if b["_env"] == self.name]

    async def bot(self, bot_id: str) -> dict[str, Any] | None:
        doc = self.store.get("bot", bot_id.lower())
        return await self.settle(doc) if doc and doc["_env"] == self.name else None

    async def settle(self, bot: dict[str, Any]) -> dict[str, Any]:
        """Finish a publish whose time has come (the real one completes asynchronously)."""
        due = bot.get("_publish_due")
        if due and self.clock.now() >= due:
            stamp = datetime.fromtimestamp(due, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            bot["publishedon"] = stamp
            bot["synchronizationstatus"] = sync_status(
                bot["authenticationmode"], bot["_registration_app_id"], stamp,
                started=_precise(bot.get("_publish_started") or due), ended=_precise(due),
            )
            bot["_published_auth_mode"] = bot["authenticationmode"]
            bot["_auth_published"] = True
            bot["_publish_due"] = None
            bot["versionnumber"] += 1
            await self.store.put("bot", bot["botid"], bot)
        return bot

    def systemusers(self) -> list[dict[str, Any]]:
        rows = [u for u in self.store.all("systemuser") if u["_env"] == self.name]
        for client in self.identities_list():
            roles = client.dataverse_roles.get(self.name)
            if roles:
                rows.append({
                    "systemuserid": client.user_id, "fullname": f"# {client.display_name}", "applicationid": client.client_id,
                    "isdisabled": False, "accessmode": 4, "msdyn_agentType": 192350000, "msdyn_botprovider": 192350002,
                    "msdyn_botapplicationid": None, "msdyn_bothandle": None, "msdyn_usertype": 192350000,
                    "msdyn_owningenvironmentid": None, "azureactivedirectoryobjectid": client.service_principal_id, "_env": self.name,
                })
        return rows

    def identities_list(self) -> list[Any]:
        from .identity import Client

        return [Client(**d) for d in self.store.all("client")]

    # ---- HTTP ------------------------------------------------------------------------------------------

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", "/api/data/v9.2/{path:.*}", self.dispatch), web.route("*", "/{path:.*}", self.not_api)]

    async def not_api(self, request: web.Request) -> web.Response:
        return web.Response(status=404, text="The resource you are looking for has been removed, had its name changed, or is temporarily unavailable.")

    async def dispatch(self, request: web.Request) -> web.Response:
        request_id = str(uuid.uuid4())
        response = await self._dispatch(request)
        response.headers["x-ms-service-request-id"] = request_id
        response.headers["REQ_ID"] = request_id
        response.headers["OData-Version"] = "4.0"
        return response

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> web.Response:
        return dataverse_error(status, code, message, headers=headers)

    async def _dispatch(self, request: web.Request) -> web.Response:
        settings = self.faults.settings
        if settings.latency_ms:
            await asyncio.sleep(settings.latency_ms / 1000)
        try:
            token = self.entra.verify_token(request.headers.get("Authorization"), self.origin)
        except InvalidToken:
            return web.Response(
                status=401,
                headers={"WWW-Authenticate": f'Bearer authorization_uri={self.entra.base_url}/{self.entra.tenant_id}/oauth2/authorize, resource_id={self.origin}/'},
            )
        client = self.identities.get(token.client_id)
        roles = client.dataverse_roles.get(self.name, []) if client else []
        if not roles:
            return self._error(403, "0x80072560", "The user is not a member of the organization.")
        path = request.match_info["path"]
        if self.faults.roll(settings.throttle_rate):
            return self._error(
                429, "0x80072322", "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
                headers={"Retry-After": str(int(settings.retry_after_s) if settings.retry_after_s >= 1 else settings.retry_after_s)},
            )
        if self.faults.roll(settings.unavailable_rate):
            return self._error(503, "0x80040216", "The service is temporarily unavailable. Please try again later.")
        writer = bool(WRITE_ROLES & set(roles))
        assert client is not None
        try:
            async with self._lock:
                return await self._route(request, path, client, writer)
        except json.JSONDecodeError:
            return self._error(400, "0x80040333", "Error reading JSON request payload: the body is not valid JSON.")

    async def _route(self, request: web.Request, path: str, client: Any, writer: bool) -> web.Response:
        method = request.method
        if path == "WhoAmI" and method == "GET":
            org = self._organization()
            return web.json_response({
                "@odata.context": f"{self.origin}{API}$metadata#Microsoft.Dynamics.CRM.WhoAmIResponse",
                "BusinessUnitId": org["_business_unit"], "UserId": client.user_id, "OrganizationId": org["organizationid"],
            })
        if path == "organizations" and method == "GET":
            org = {"friendlyname": friendly_name(self.name)} | {k: v for k, v in self._organization().items() if not k.startswith("_")}
            return self._collection(request, "organizations", [org], ("organizationid", "name", "friendlyname"))
        if path == "bots" and method == "GET":
            return self._collection(request, "bots", await self.bots(), BOT_COLUMNS)
        if path == "systemusers" and method == "GET":
            return self._collection(request, "systemusers", self.systemusers(), SYSTEMUSER_COLUMNS)
        if path == "systemusers" and method == "POST":
            if not writer:
                return self._missing_privilege(client, "prvCreateUser")
            return await self._create_systemuser(request)
        if path == "msdyn_liveworkstreams" and method == "GET":
            rows = [w for w in self.store.all("workstream") if w["_env"] == self.name]
            return self._collection(request, "msdyn_liveworkstreams", rows, ("msdyn_liveworkstreamid", "msdyn_name", "_msdyn_bot_user_value", "msdyn_bothandle"))
        m = _ITEM.match(path)
        if m and m.group("set") == "bots":
            bot = await self.bot(m.group("id"))
            if bot is None:
                return self._error(404, "0x80040217", f"bot With Id = {m.group('id')} Does Not Exist")
            action = m.group("action")
            if action is None and method == "GET":
                return self._entity(request, "bots", bot, BOT_COLUMNS)
            if action is None and method == "PATCH":
                if not writer:
                    return self._missing_privilege(client, "prvWritebot")
                return await self._patch_bot(request, bot)
            if action == "Microsoft.Dynamics.CRM.PvaPublish" and method == "POST":
                if not writer:
                    return self._missing_privilege(client, "prvWritebot")
                return await self._publish(request, bot)
            return self._error(400, "0x8006088a", f"Resource not found for the segment '{action}'.")
        if m and m.group("set") == "msdyn_liveworkstreams" and method == "PATCH":
            if not writer:
                return self._missing_privilege(client, "prvWritemsdyn_liveworkstream")
            return await self._patch_workstream(request, m.group("id"))
        segment = path.split("(")[0].split("/")[0]
        return self._error(404, "0x8006088a", f"Resource not found for the segment '{segment}'.")

    def _organization(self) -> dict[str, Any]:
        org = self.store.get("organization", self.name)
        assert org is not None
        return org

    def _missing_privilege(self, client: Any, privilege: str) -> web.Response:
        return self._error(
            403, "0x80040220",
            f"Principal user (Id={client.user_id}, type=8, roleCount=1, privilegeCount=0) is missing {privilege} privilege "
            f"(Id={uuid.uuid5(uuid.NAMESPACE_URL, privilege)}) on OTC=10185 for entity 'bot'.",
        )

    def _columns(self, request: web.Request, allowed: tuple[str, ...]) -> tuple[list[str] | None, web.Response | None]:
        select = request.query.get("$select")
        if not select:
            return list(allowed), None
        cols = [c.strip() for c in select.split(",") if c.strip()]
        for c in cols:
            if c not in allowed:
                return None, self._error(400, "0x80060888", f"Could not find a property named '{c}' on type 'Microsoft.Dynamics.CRM.{request.match_info['path'].split('(')[0].rstrip('s')}'.")
        return cols, None

    def _collection(self, request: web.Request, entity_set: str, rows: list[dict[str, Any]], allowed: tuple[str, ...]) -> web.Response:
        cols, err = self._columns(request, allowed)
        if err:
            return err
        assert cols is not None
        flt = request.query.get("$filter")
        if flt:
            for clause in re.split(r"\s+and\s+", flt, flags=re.I):
                m = _CLAUSE.match(clause)
                if not m:
                    return self._error(400, "0x80060888", f"The query parameter $filter '{flt}' is not supported by the sandbox or is malformed.")
                prop = m.group("prop")
                if prop not in allowed and prop != "ismanaged":
                    return self._error(400, "0x80060888", f"Could not find a property named '{prop}' on type 'Microsoft.Dynamics.CRM.{entity_set.rstrip('s')}'.")
                if m.group("s") is not None:
                    want: Any = m.group("s").replace("''", "'")
                elif m.group("n") is not None:
                    want = int(m.group("n"))
                elif m.group("b") is not None:
                    want = m.group("b").lower() == "true"
                else:
                    want = m.group("g")
                rows = [r for r in rows if _eq(r.get(prop), want)]
        top = request.query.get("$top")
        if top and top.isdigit():
            rows = rows[: int(top)]
        value = [{"@odata.etag": f'W/"{r.get("versionnumber", 1)}"'} | {c: r.get(c) for c in cols} for r in rows]
        return web.json_response({"@odata.context": f"{self.origin}{API}$metadata#{entity_set}({','.join(cols)})", "value": value})

    def _entity(self, request: web.Request, entity_set: str, row: dict[str, Any], allowed: tuple[str, ...]) -> web.Response:
        cols, err = self._columns(request, allowed)
        if err:
            return err
        assert cols is not None
        body = {"@odata.context": f"{self.origin}{API}$metadata#{entity_set}({','.join(cols)})/$entity",
                "@odata.etag": f'W/"{row.get("versionnumber", 1)}"'} | {c: row.get(c) for c in cols}
        return web.json_response(body, headers={"ETag": f'W/"{row.get("versionnumber", 1)}"'})

    async def _json(self, request: web.Request) -> dict[str, Any]:
        data = json.loads(await request.text() or "{}")
        if not isinstance(data, dict):
            raise json.JSONDecodeError("not an object", "", 0)
        return data

    async def _patch_bot(self, request: web.Request, bot: dict[str, Any]) -> web.Response:
        match = request.headers.get("If-Match")
        if match and match != "*" and match.strip('W/"') != str(bot["versionnumber"]):
            return self._error(412, "0x80060882", "The version of the existing record doesn't match the RowVersion property provided.")
        body = await self._json(request)
        for key in body:
            if key == "schemaname":
                return self._error(400, "0x80048d19", "Field 'schemaname' cannot be updated: it is not valid for update.")
            if key not in BOT_WRITABLE:
                return self._error(400, "0x80060888", f"Invalid property '{key}' was found in entity 'Microsoft.Dynamics.CRM.bot'.")
        for key, allowed in (("authenticationmode", range(5)), ("authenticationtrigger", range(2)), ("accesscontrolpolicy", range(4))):
            if key in body and body[key] not in allowed:
                return self._error(400, "0x8004431a", f"{body[key]} is not a valid value for {key}.")
        bot.update(body)
        if {"authenticationmode", "authenticationtrigger", "authenticationconfiguration"} & set(body):
            bot["_auth_published"] = False
        bot["versionnumber"] += 1
        bot["modifiedon"] = self.clock.iso()
        await self.store.put("bot", bot["botid"], bot)
        return web.Response(status=204)

    async def _publish(self, request: web.Request, bot: dict[str, Any]) -> web.Response:
        # 409 cases (microsoft-apis.md §9, [obs]): a publish already running (older job state
        # NotAcceptedAlreadyRunning), and a parent agent published before its child agents (ExternalServiceException).
        # Code 0x80040265 is what Dataverse answers when a plugin or custom API refuses an operation (sandbox README).
        if bot.get("_publish_due"):
            return self._error(409, "0x80040265", "A publish operation is already in progress for this bot (NotAcceptedAlreadyRunning). "
                               "Try again when it finishes.")
        pending = [c for c in await self.bots() if c.get("_parent_botid") == bot["botid"] and (c.get("_publish_due") or not c.get("publishedon"))]
        if pending:
            names = ", ".join(f"'{c['name']}'" for c in pending)
            return self._error(409, "0x80040265", f"ExternalServiceException: the child agent(s) {names} of '{bot['name']}' must be "
                               "published before the parent agent. Publish the child agents first, then this agent.")
        if self.faults.roll(self.faults.settings.dataverse_burst_rate):
            if self.faults.pick(["401", "400"]) == "401":
                return web.Response(status=401)
            return self._error(400, "0x80040216", "An unexpected error occurred: Request failed with status TooManyRequests (429). Retry the request later.")
        bot["_publish_started"] = self.clock.now()
        bot["_publish_due"] = bot["_publish_started"] + self.publish_duration
        await self.store.put("bot", bot["botid"], bot)
        return web.json_response({
            "@odata.context": f"{self.origin}{API}$metadata#Microsoft.Dynamics.CRM.PvaPublishResponse",
            "PublishedBotContentId": "",
            "PublishBotJobResponse": None,
        })

    publish_duration: float = 2.0

    async def _create_systemuser(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        allowed = {"applicationid", "accessmode", "isdisabled", "businessunitid@odata.bind", "fullname", "msdyn_agentType",
                   "msdyn_botprovider", "msdyn_botapplicationid", "msdyn_bothandle", "msdyn_usertype"}
        for key in body:
            if key not in allowed:
                return self._error(400, "0x80060888", f"Invalid property '{key}' was found in entity 'Microsoft.Dynamics.CRM.systemuser'.")
        if not body.get("applicationid"):
            return self._error(400, "0x80044331", "A value for applicationid is required to create an application user.")
        if any(u.get("applicationid") == body["applicationid"] for u in self.systemusers()):
            return self._error(400, "0x80040237", "The Application ID that you use must be unique to your Dataverse organization.")
        user = {c: None for c in SYSTEMUSER_COLUMNS} | {k: v for k, v in body.items() if "@" not in k}
        user["systemuserid"] = str(uuid.uuid4())
        user["_env"] = self.name
        await self.store.put("systemuser", user["systemuserid"], user)
        entity = f"{self.origin}{API}systemusers({user['systemuserid']})"
        return web.Response(status=204, headers={"OData-EntityId": entity})

    async def _patch_workstream(self, request: web.Request, ws_id: str) -> web.Response:
        row = self.store.get("workstream", ws_id.lower())
        if row is None or row["_env"] != self.name:
            return self._error(404, "0x80040217", f"msdyn_liveworkstream With Id = {ws_id} Does Not Exist")
        body = await self._json(request)
        for key, value in body.items():
            if key != "msdyn_bot_user@odata.bind":
                return self._error(400, "0x80060888", f"Invalid property '{key}' was found in entity 'Microsoft.Dynamics.CRM.msdyn_liveworkstream'.")
            m = re.fullmatch(r"/?systemusers\(([0-9a-fA-F-]{36})\)", str(value))
            if not m or not any(u["systemuserid"] == m.group(1).lower() for u in self.systemusers()):
                return self._error(400, "0x80040217", f"systemuser referenced by {value} does not exist.")
            row["_msdyn_bot_user_value"] = m.group(1).lower()
        await self.store.put("workstream", row["msdyn_liveworkstreamid"], row)
        return web.Response(status=204)


def friendly_name(environment: str) -> str:
    """What the Power Platform admin center shows for an environment, e.g. "Contoso (sandbox)"."""
    return f"{environment.title()} (sandbox)"


def _precise(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _eq(actual: Any, want: Any) -> bool:
    if isinstance(want, str) and isinstance(actual, str):
        return actual.lower() == want.lower()
    return bool(actual == want)
