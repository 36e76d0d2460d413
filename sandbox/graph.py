"""Microsoft Graph v1.0: applications and their passwords; service principals, owners, federated identity
credentials and the app-management policy live in graph_directory.py and graph_credentials.py.

Strict like the real service: every request body is validated against the contract schema; bearer
tokens are checked (signature, audience https://graph.microsoft.com, expiry, app roles); an app-only
caller with Application.ReadWrite.OwnedBy sees and changes only the applications it created; newly
created objects are invisible to follow-up calls for the replication delay.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import uuid
from datetime import timedelta
from typing import Any, Awaitable, Callable

from aiohttp import web

from . import schema
from .clock import Clock
from .entra import Entra, InvalidToken, TokenInfo
from .errors import REQUEST_ID, graph_error
from .faults import FaultInjector
from .graph_credentials import FederatedCredentials
from .graph_directory import Directory
from .graph_model import GRAPH_CONTEXT, deep_merge, new_application, parse_dt, public
from .identity import GRAPH_RESOURCE, hash_secret, new_secret
from .policy import TenantPolicy
from .store import Store

WRITE_ROLES = frozenset({"Application.ReadWrite.OwnedBy", "Application.ReadWrite.All"})
READ_ROLES = WRITE_ROLES | {"Application.Read.All", "Directory.Read.All"}
ALL_ROLES = frozenset({"Application.ReadWrite.All"})
FILTERABLE = {"displayName", "appId", "uniqueName", "signInAudience", "id"}
DEFAULT_PASSWORD_LIFETIME = timedelta(days=730)

_KEY = re.compile(
    r"^applications(?:/(?P<id>[^/(]+)|\((?P<alt>appId|uniqueName)='(?P<val>[^']*)'\))"
    r"(?:/(?P<action>[A-Za-z.]+)(?P<rest>(?:\(.*\)|/.*)?))?/?$"
)
_FILTER = re.compile(
    r"^\s*(?:(?P<prop>\w+)\s+eq\s+'(?P<val>(?:[^']|'')*)'|startswith\(\s*(?P<sprop>\w+)\s*,\s*'(?P<sval>(?:[^']|'')*)'\s*\))\s*$",
    re.IGNORECASE,
)

Handler = Callable[[web.Request, TokenInfo], Awaitable[web.Response]]


class Graph:
    def __init__(
        self,
        *,
        store: Store,
        entra: Entra,
        faults: FaultInjector,
        publisher_domain: str,
        policy: TenantPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.entra = entra
        self.faults = faults
        self.publisher_domain = publisher_domain
        self.policy = policy or TenantPolicy()
        self.clock = clock or Clock()
        self.base_url = ""
        self.lock = asyncio.Lock()  # one writer at a time, shared with the operator endpoint
        self.directory = Directory(self)
        self.federated = FederatedCredentials(self)

    @property
    def max_password_lifetime(self) -> str | None:
        return self.policy.max_password_lifetime

    @max_password_lifetime.setter
    def max_password_lifetime(self, value: str | None) -> None:
        self.policy.max_password_lifetime = value

    def routes(self) -> list[web.RouteDef]:
        return [web.route("*", "/v1.0/{path:.*}", self.dispatch)]

    # ---- plumbing (also used by graph_directory and graph_credentials) ---------------------------------

    def replicating(self, created: float | None) -> bool:
        """Still invisible to reads; an object made before the clock was set back counts as replicated."""
        return created is not None and 0 <= self.clock.now() - created < self.faults.settings.replication_delay_s

    def context(self, fragment: str) -> str:
        return f"{GRAPH_CONTEXT}{fragment}"

    async def dispatch(self, request: web.Request) -> web.Response:
        request[REQUEST_ID] = str(uuid.uuid4())
        response = await self._dispatch(request)
        response.headers["request-id"] = request[REQUEST_ID]
        response.headers["client-request-id"] = request.headers.get("client-request-id", request[REQUEST_ID])
        response.headers["x-ms-ags-diagnostic"] = json.dumps({"ServerInfo": {"DataCenter": "Sandbox", "Slice": "E"}})
        return response

    async def _dispatch(self, request: web.Request) -> web.Response:
        settings = self.faults.settings
        if settings.latency_ms:
            await asyncio.sleep(settings.latency_ms / 1000)
        try:
            token = self.entra.verify_token(request.headers.get("Authorization"), GRAPH_RESOURCE)
        except InvalidToken as exc:
            return graph_error(request, 401, "InvalidAuthenticationToken", str(exc), headers={"WWW-Authenticate": 'Bearer realm=""'})
        if self.faults.roll(settings.throttle_rate):
            return graph_error(
                request, 429, "TooManyRequests", "Too many requests.",
                headers={
                    "Retry-After": str(int(settings.retry_after_s) if settings.retry_after_s >= 1 else settings.retry_after_s),
                    "x-ms-throttle-scope": "Tenant_Application/ReadWrite/sandbox",
                    "x-ms-throttle-information": "WriteLimitExceeded",
                },
            )
        if self.faults.roll(settings.unavailable_rate):
            return graph_error(request, 503, "serviceNotAvailable", "The service is temporarily unavailable. Please try again later.",
                               headers={"Retry-After": str(int(max(1, settings.retry_after_s)))})
        path = request.match_info["path"]
        method = request.method
        try:
            if path == "applications":
                if method == "GET":
                    return await self._guard(request, token, READ_ROLES, self.list_applications)
                if method == "POST":
                    return await self._guard(request, token, WRITE_ROLES, self.create_application)
            elif path == "servicePrincipals" and method == "POST":
                return await self._guard(request, token, WRITE_ROLES, self.directory.create_service_principal)
            elif path.startswith("servicePrincipals(appId='") and method == "GET":
                return await self._guard(request, token, READ_ROLES, self.directory.get_service_principal)
            elif path == "policies/defaultAppManagementPolicy" and method == "GET":
                return await self._guard(request, token, frozenset({"Policy.Read.All"}), self.directory.get_policy)
            elif match := _KEY.match(path):
                return await self._application_item(request, token, match)
        except json.JSONDecodeError:
            return graph_error(request, 400, "BadRequest", "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.")
        segment = path.split("/")[0].split("(")[0]
        if method not in ("GET", "POST", "PATCH", "DELETE"):
            return graph_error(request, 405, "Request_BadRequest", f"The HTTP method '{method}' is not allowed for this resource.")
        return graph_error(request, 400, "BadRequest", f"Resource not found for the segment '{segment}'.")

    async def _guard(self, request: web.Request, token: TokenInfo, roles: frozenset[str], handler: Handler) -> web.Response:
        if not token.roles & roles:
            return graph_error(request, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        async with self.lock:
            return await handler(request, token)

    async def read_json(self, request: web.Request) -> tuple[dict[str, Any] | None, web.Response | None]:
        """The JSON object in the body ({} without one); raises JSONDecodeError for unreadable JSON."""
        if not request.can_read_body:
            return {}, None
        if request.content_type != "application/json":
            return None, graph_error(request, 415, "BadRequest", "A supported MIME type could not be found that matches the content type of the response. None of the supported type(s) 'application/json' matches the content type '" + request.content_type + "'.")
        data = json.loads(await request.text() or "{}")
        if not isinstance(data, dict):
            return None, graph_error(request, 400, "BadRequest", "Unable to read JSON request payload.")
        return data, None

    async def body(self, request: web.Request, definition: str) -> tuple[dict[str, Any] | None, web.Response | None]:
        data, err = await self.read_json(request)
        if err:
            return None, err
        problems = schema.errors(definition, data)
        if problems:
            return None, graph_error(request, 400, "Request_BadRequest", schema.graph_message(problems[0]))
        return data, None

    def visible(self, app: dict[str, Any], token: TokenInfo) -> bool:
        return bool(token.roles & (ALL_ROLES | {"Application.Read.All", "Directory.Read.All"})) or app.get("_owner") == token.client_id

    def find(self, key: str, value: str) -> dict[str, Any] | None:
        for app in self.store.all("application"):
            if app.get(key) == value:
                return app
        return None

    def not_found(self, request: web.Request, ident: str) -> web.Response:
        return graph_error(
            request, 404, "Request_ResourceNotFound",
            f"Resource '{ident}' does not exist or one of its queried reference-property objects are not present.",
        )

    def _output(self, app: dict[str, Any]) -> dict[str, Any]:
        """The application as a follow-up read sees it: passwords still replicating are not there yet."""
        out = public(copy.deepcopy(app))
        out["passwordCredentials"] = [
            public(p) for p in app.get("passwordCredentials", []) if not self.replicating(p.get("_created"))
        ]
        for p in out["passwordCredentials"]:
            p.pop("secretText", None)
        return out

    def _select(self, request: web.Request, doc: dict[str, Any]) -> tuple[dict[str, Any] | None, web.Response | None]:
        select = request.query.get("$select")
        if not select:
            return doc, None
        fields = [f.strip() for f in select.split(",") if f.strip()]
        known = set(doc) | {"owners"}
        for f in fields:
            if f not in known:
                return None, graph_error(request, 400, "Request_UnsupportedQuery", f"Property '{f}' does not exist as a declared property or extension property.")
        return {k: doc[k] for k in fields if k in doc}, None

    # ---- applications ---------------------------------------------------------------------------------

    async def list_applications(self, request: web.Request, token: TokenInfo) -> web.Response:
        apps = [a for a in self.store.all("application") if self.visible(a, token) and not self.replicating(a.get("_created"))]
        flt = request.query.get("$filter")
        if flt:
            m = _FILTER.match(flt)
            if not m:
                return graph_error(request, 400, "Request_UnsupportedQuery", f"Unsupported or invalid query filter clause specified: '{flt}'.")
            prop = m.group("prop") or m.group("sprop")
            value = (m.group("val") if m.group("prop") else m.group("sval")).replace("''", "'")
            if prop not in FILTERABLE:
                return graph_error(request, 400, "Request_UnsupportedQuery", f"Property '{prop}' does not exist as a declared property or extension property.")
            if m.group("prop"):
                apps = [a for a in apps if a.get(prop) == value]
            else:
                apps = [a for a in apps if str(a.get(prop) or "").lower().startswith(value.lower())]
        top = request.query.get("$top")
        if top is not None:
            if not top.isdigit() or not 1 <= int(top) <= 999:
                return graph_error(request, 400, "Request_BadRequest", "Invalid page size specified: '" + top + "'. Must be between 1 and 999 inclusive.")
            apps = apps[: int(top)]
        else:
            apps = apps[:100]
        value = []
        for a in apps:
            doc, err = self._select(request, self._output(a))
            if err:
                return err
            value.append(doc)
        return web.json_response({"@odata.context": self.context("applications"), "value": value})

    async def create_application(self, request: web.Request, token: TokenInfo) -> web.Response:
        body, err = await self.body(request, "request.applications.create")
        if err:
            return err
        assert body is not None
        if "passwordCredentials" in body:
            return graph_error(request, 400, "Request_BadRequest", "Use addPassword to add a client secret; passwordCredentials on create is not supported here.")
        app = new_application(body["displayName"], token.client_id, self.publisher_domain, self.clock.now())
        deep_merge(app, {k: v for k, v in body.items() if not k.startswith("@")})
        await self.store.put("application", app["id"], app)
        out = self._output(app)
        out["@odata.context"] = self.context("applications/$entity")
        return web.json_response(out, status=201, headers={"Location": f"{self.base_url}/v1.0/directoryObjects/{app['id']}/Microsoft.DirectoryServices.Application"})

    async def _application_item(self, request: web.Request, token: TokenInfo, match: re.Match[str]) -> web.Response:
        alt, val, oid, action = match.group("alt"), match.group("val"), match.group("id"), match.group("action")
        method = request.method
        if alt == "uniqueName" and method == "PATCH" and not action:
            return await self._guard(request, token, WRITE_ROLES, lambda r, t: self.upsert(r, t, val))
        needed = READ_ROLES if method == "GET" else WRITE_ROLES
        if not token.roles & needed:
            return graph_error(request, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
        async with self.lock:
            app = self.find(alt, val) if alt else self.store.get("application", oid)
            if app is None or self.replicating(app.get("_created")):
                return self.not_found(request, val if alt else oid)
            if not self.visible(app, token):
                return graph_error(request, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
            if action is None:
                if method == "GET":
                    out, err = self._select(request, self._output(app))
                    if err:
                        return err
                    assert out is not None
                    out["@odata.context"] = self.context("applications/$entity")
                    return web.json_response(out)
                if method == "PATCH":
                    return await self._update(request, app)
                if method == "DELETE":
                    await self.store.delete("application", app["id"])
                    return web.Response(status=204)
            elif action == "federatedIdentityCredentials":
                return await self.federated.handle(request, app, match.group("rest") or "")
            elif action == "owners" and method == "GET" and not match.group("rest"):
                return await self.directory.owners(request, app)
            elif action == "addPassword" and method == "POST":
                return await self._add_password(request, app)
            elif action == "removePassword" and method == "POST":
                return await self._remove_password(request, app)
            return graph_error(request, 400, "BadRequest", f"Resource not found for the segment '{action}'.")

    async def _update(self, request: web.Request, app: dict[str, Any]) -> web.Response:
        body, err = await self.body(request, "request.applications.update")
        if err:
            return err
        assert body is not None
        if "passwordCredentials" in body:
            return graph_error(request, 400, "Request_BadRequest", "Updating passwordCredentials via PATCH is not supported. Use addPassword and removePassword.")
        deep_merge(app, {k: v for k, v in body.items() if not k.startswith("@")})
        await self.store.put("application", app["id"], app)
        return web.Response(status=204)

    async def upsert(self, request: web.Request, token: TokenInfo, unique_name: str) -> web.Response:
        prefer = request.headers.get("Prefer", "")
        app = self.find("uniqueName", unique_name)
        if app is not None:
            if not self.visible(app, token):
                return graph_error(request, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
            body, err = await self.body(request, "request.applications.update")
            if err:
                return err
            assert body is not None
            if "displayName" not in body:
                return graph_error(request, 400, "Request_BadRequest", "A value is required for property 'displayName' of resource 'Application'.")
            deep_merge(app, {k: v for k, v in body.items() if not k.startswith("@")})
            await self.store.put("application", app["id"], app)
            return web.Response(status=204)
        if "create-if-missing" not in prefer.lower():
            return self.not_found(request, unique_name)
        if not unique_name or len(unique_name) > 120:
            return graph_error(request, 400, "Request_BadRequest", "Invalid value specified for property 'uniqueName' of resource 'Application'.")
        body, err = await self.body(request, "request.applications.upsert")
        if err:
            return err
        assert body is not None
        app = new_application(body["displayName"], token.client_id, self.publisher_domain, self.clock.now())
        deep_merge(app, {k: v for k, v in body.items() if not k.startswith("@")})
        app["uniqueName"] = unique_name
        await self.store.put("application", app["id"], app)
        out = self._output(app)
        out["@odata.context"] = self.context("applications/$entity")
        return web.json_response(out, status=201, headers={"Preference-Applied": "create-if-missing"})

    # ---- passwords ------------------------------------------------------------------------------------

    async def _add_password(self, request: web.Request, app: dict[str, Any]) -> web.Response:
        body, err = await self.body(request, "request.applications.addPassword")
        if err:
            return err
        assert body is not None
        if self.policy.blocks_password_addition(app["createdDateTime"]):
            # Code: OfficeDev/microsoft-365-agents-toolkit PR #11188 (aadErrorCode.credentialTypeNotAllowedAsPerAppPolicy);
            # message: publicly reported answers to addPassword / `az ad app credential reset` in such tenants.
            return graph_error(request, 400, "CredentialTypeNotAllowedAsPerAppPolicy", "Credential type not allowed as per assigned policy.")
        cred_in = body.get("passwordCredential") or {}
        now = self.clock.utcnow()
        start = parse_dt(cred_in["startDateTime"]) if cred_in.get("startDateTime") else now
        end = parse_dt(cred_in["endDateTime"]) if cred_in.get("endDateTime") else start + DEFAULT_PASSWORD_LIFETIME
        if end <= start:
            return graph_error(request, 400, "Request_BadRequest", "Invalid value specified for property 'endDateTime' of resource 'PasswordCredential'.")
        limit = self.policy.max_lifetime()
        if limit is not None and end - start > limit + timedelta(minutes=5):
            return graph_error(
                request, 400, "CredentialInvalidLifetimeAsPerAppPolicy",
                "Credential lifetime exceeds the max value allowed as per assigned policy.",
            )
        if len(app.get("passwordCredentials", [])) >= (2 if app.get("signInAudience", "").endswith("MicrosoftAccount") else 100):
            return graph_error(request, 400, "Request_BadRequest", "The number of client secrets exceeds the limit for this application.")
        secret = new_secret()
        cred = {
            "customKeyIdentifier": None,
            "displayName": cred_in.get("displayName"),
            "endDateTime": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "hint": secret[:3],
            "keyId": str(uuid.uuid4()),
            "startDateTime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "_hash": hash_secret(secret),
            "_created": self.clock.now(),
        }
        app.setdefault("passwordCredentials", []).append(cred)
        await self.store.put("application", app["id"], app)
        out = public(cred) | {"secretText": secret, "@odata.context": self.context("microsoft.graph.passwordCredential")}
        return web.json_response(out, status=200)

    async def _remove_password(self, request: web.Request, app: dict[str, Any]) -> web.Response:
        body, err = await self.body(request, "request.applications.removePassword")
        if err:
            return err
        assert body is not None
        creds = app.get("passwordCredentials", [])
        remaining = [c for c in creds if c["keyId"].lower() != body["keyId"].lower()]
        if len(remaining) == len(creds):
            # Unknown keyId: 404 Request_ResourceNotFound, Graph's answer for a missing object (microsoft-apis.md §2.3);
            # manicminer/hamilton (the Go Graph client of terraform-provider-azuread) retries removePassword on 404
            # as replication lag, i.e. Graph answers 404 when it cannot find the key. See the sandbox README.
            return self.not_found(request, body["keyId"])
        app["passwordCredentials"] = remaining
        await self.store.put("application", app["id"], app)
        return web.Response(status=204)
