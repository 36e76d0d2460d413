"""Graph v1.0 federated identity credentials of an application (`…/applications/{id}/federatedIdentityCredentials`).

Sources (microsoftgraph/microsoft-graph-docs-contrib `api-reference/v1.0`): resources/federatedidentitycredential.md
(properties and limits), api/application-post-federatedidentitycredentials.md (POST → 201, at most 20 per app),
application-list-federatedidentitycredentials.md (`$filter` eq, `$select`), federatedidentitycredential-get.md,
-update.md (PATCH → 204; address by id or name), -upsert.md (PATCH `(name='…')`, `Prefer: create-if-missing`
"Required for upsert behavior, otherwise the request is treated as an update operation": 201 created, 204 updated),
-delete.md (204). Observed error bodies: duplicate name 409 `Request_MultipleObjectsWithSameKeyValue`
"FederatedIdentityCredential with name main already exists." (Azure/azure-dev#1482); a name that is not URL
friendly 400 `InvalidFederatedIdentityCredentialValue` "The specified Name value is not a valid URI last segment.
paramName: FederatedIdentityCredential.Name, paramValue: …, objectType: Microsoft.Online.DirectoryServices.Application"
(Azure/azure-dev#2505); issuer + subject taken 400 `InvalidFederatedIdentityCredentialValue` "The combination of
issuer and subject must be unique for the application. Issuer … and Subject: … already exist. …"
(Azure/azure-workload-identity#434); more than one audience "Federated identity credentials must have exactly 1
audience." (code `InvalidFederatedIdentityCredentialsAudienceLength` on the managed-identity API, Azure/azure-cli#31598).
Where nothing is public (lengths, the 21st credential, a changed name) the sandbox follows the same
`InvalidFederatedIdentityCredentialValue … paramName …` form or Graph's generic `Request_BadRequest` messages; see
the sandbox README.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from aiohttp import web

from .errors import graph_error
from .graph_model import GRAPH_CONTEXT

if TYPE_CHECKING:
    from .graph import Graph

TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
MAX_PER_APPLICATION = 20
MAX_NAME = 120
MAX_VALUE = 600
FIELDS = ("id", "name", "issuer", "subject", "description", "audiences")
WRITABLE = {"name", "issuer", "subject", "description", "audiences"}
FILTERABLE = {"name", "subject", "issuer"}
_URL_FRIENDLY = re.compile(r"^[A-Za-z0-9._~-]+$")  # RFC 3986 unreserved characters
_BY_NAME = re.compile(r"^\(name='(?P<name>(?:[^']|'')*)'\)$")
_FILTER = re.compile(r"^\s*(?P<prop>\w+)\s+eq\s+'(?P<val>(?:[^']|'')*)'\s*$", re.IGNORECASE)
RESOURCE = "FederatedIdentityCredential"


def public_credential(cred: dict[str, Any]) -> dict[str, Any]:
    return {k: cred.get(k) for k in FIELDS}


class FederatedCredentials:
    def __init__(self, graph: "Graph") -> None:
        self.graph = graph

    async def handle(self, request: web.Request, app: dict[str, Any], rest: str) -> web.Response:
        method = request.method
        if rest in ("", "/"):
            if method == "GET":
                return self._list(request, app)
            if method == "POST":
                return await self._create(request, app, None)
            return self._method_not_allowed(request)
        by_name = _BY_NAME.match(rest)
        if by_name:
            name = by_name.group("name").replace("''", "'")
            cred = self._by_name(app, name)
        elif rest.startswith("/") and "/" not in rest[1:] and rest[1:]:
            name = rest[1:]
            cred = self._by_id(app, name) or self._by_name(app, name)
        else:
            segment = rest.strip("/").split("/")[0].split("(")[0] or rest
            return graph_error(request, 400, "BadRequest", f"Resource not found for the segment '{segment}'.")
        if method == "PATCH":
            if cred is None:
                if by_name and "create-if-missing" in request.headers.get("Prefer", "").lower():
                    return await self._create(request, app, name)
                return self.graph.not_found(request, name)
            return await self._update(request, app, cred)
        if method == "GET":
            if cred is None or self.graph.replicating(cred.get("_created")):
                return self.graph.not_found(request, name)
            out, err = self._select(request, public_credential(cred))
            return err or web.json_response(out | {"@odata.context": self._context(app, entity=True)})
        if method == "DELETE":
            if cred is None:
                return self.graph.not_found(request, name)
            app["_federated"] = [c for c in app["_federated"] if c["id"] != cred["id"]]
            await self.graph.store.put("application", app["id"], app)
            return web.Response(status=204)
        return self._method_not_allowed(request)

    # ---- lookups --------------------------------------------------------------------------------------

    def _creds(self, app: dict[str, Any]) -> list[dict[str, Any]]:
        creds: list[dict[str, Any]] = app.setdefault("_federated", [])
        return creds

    def _by_id(self, app: dict[str, Any], ident: str) -> dict[str, Any] | None:
        return next((c for c in self._creds(app) if c["id"] == ident.lower()), None)

    def _by_name(self, app: dict[str, Any], name: str) -> dict[str, Any] | None:
        return next((c for c in self._creds(app) if c["name"].lower() == name.lower()), None)

    def _context(self, app: dict[str, Any], *, entity: bool = False) -> str:
        return f"{GRAPH_CONTEXT}applications('{app['id']}')/federatedIdentityCredentials" + ("/$entity" if entity else "")

    def _method_not_allowed(self, request: web.Request) -> web.Response:
        return graph_error(request, 405, "Request_BadRequest", f"The HTTP method '{request.method}' is not allowed for this resource.")

    def _select(self, request: web.Request, doc: dict[str, Any]) -> tuple[dict[str, Any], web.Response | None]:
        fields = [f.strip() for f in request.query.get("$select", "").split(",") if f.strip()]
        for f in fields:
            if f not in FIELDS:
                return {}, graph_error(request, 400, "Request_UnsupportedQuery", f"Property '{f}' does not exist as a declared property or extension property.")
        return ({k: doc[k] for k in fields} if fields else doc), None

    # ---- handlers -------------------------------------------------------------------------------------

    def _list(self, request: web.Request, app: dict[str, Any]) -> web.Response:
        creds = [c for c in self._creds(app) if not self.graph.replicating(c.get("_created"))]
        flt = request.query.get("$filter")
        if flt:
            m = _FILTER.match(flt)
            if not m:
                return graph_error(request, 400, "Request_UnsupportedQuery", f"Unsupported or invalid query filter clause specified: '{flt}'.")
            if m.group("prop") not in FILTERABLE:
                return graph_error(request, 400, "Request_UnsupportedQuery", f"Property '{m.group('prop')}' does not exist as a declared property or extension property.")
            want = m.group("val").replace("''", "'")
            creds = [c for c in creds if c.get(m.group("prop")) == want]
        value = []
        for c in creds:
            doc, err = self._select(request, public_credential(c))
            if err:
                return err
            value.append(doc)
        return web.json_response({"@odata.context": self._context(app), "value": value})

    async def _create(self, request: web.Request, app: dict[str, Any], url_name: str | None) -> web.Response:
        body, err = await self._body(request)
        if err:
            return err
        assert body is not None
        if url_name is not None:
            if "name" in body and body["name"] != url_name:
                return self._invalid(request, "Name", str(body["name"]), "The name in the request body must match the name in the request URL.")
            body["name"] = url_name
        for prop in ("name", "issuer", "subject", "audiences"):
            if body.get(prop) in (None, "", []):
                return graph_error(request, 400, "Request_BadRequest", f"A value is required for property '{prop}' of resource '{RESOURCE}'.")
        cred = {"id": str(uuid.uuid4()), "name": body["name"], "issuer": body["issuer"], "subject": body["subject"],
                "description": body.get("description"), "audiences": list(body["audiences"])}
        problem = self._check(request, app, cred, None)
        if problem:
            return problem
        if len(self._creds(app)) >= MAX_PER_APPLICATION:
            return graph_error(request, 400, "Request_BadRequest",
                               f"The number of federated identity credentials exceeds the limit of {MAX_PER_APPLICATION} for this application.")
        self._creds(app).append(cred | {"_created": self.graph.clock.now()})
        await self.graph.store.put("application", app["id"], app)
        return web.json_response(public_credential(cred) | {"@odata.context": self._context(app, entity=True)}, status=201)

    async def _update(self, request: web.Request, app: dict[str, Any], cred: dict[str, Any]) -> web.Response:
        body, err = await self._body(request)
        if err:
            return err
        assert body is not None
        if "name" in body and body["name"] != cred["name"]:
            return self._invalid(request, "Name", str(body["name"]), "The name of a federated identity credential is immutable once it is created.")
        changed = cred | {k: (list(v) if k == "audiences" else v) for k, v in body.items() if k in WRITABLE}
        problem = self._check(request, app, changed, cred["id"])
        if problem:
            return problem
        cred.update(changed)
        await self.graph.store.put("application", app["id"], app)
        return web.Response(status=204)

    # ---- validation -----------------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> tuple[dict[str, Any] | None, web.Response | None]:
        data, err = await self.graph.read_json(request)
        if err:
            return None, err
        assert data is not None
        for key, value in data.items():
            if key == "@odata.type":
                if value not in ("#microsoft.graph.federatedIdentityCredential", "microsoft.graph.federatedIdentityCredential"):
                    return None, graph_error(request, 400, "Request_BadRequest", "One or more properties contains invalid values.")
                continue
            if key not in WRITABLE:
                return None, graph_error(request, 400, "Request_BadRequest", f"Invalid property '{key}'.")
            ok = (isinstance(value, list) and all(isinstance(a, str) for a in value)) if key == "audiences" else (
                isinstance(value, str) or (key == "description" and value is None))
            if not ok:
                return None, graph_error(request, 400, "Request_BadRequest", f"Invalid value specified for property '{key}' of resource '{RESOURCE}'.")
        return {k: v for k, v in data.items() if k != "@odata.type"}, None

    def _invalid(self, request: web.Request, param: str, value: str, why: str) -> web.Response:
        return graph_error(
            request, 400, "InvalidFederatedIdentityCredentialValue",
            f"{why} paramName: {RESOURCE}.{param}, paramValue: {value}, objectType: Microsoft.Online.DirectoryServices.Application",
        )

    def _check(self, request: web.Request, app: dict[str, Any], cred: dict[str, Any], own_id: str | None) -> web.Response | None:
        name, issuer, subject = cred["name"], cred["issuer"], cred["subject"]
        if len(name) > MAX_NAME:
            return self._invalid(request, "Name", name, f"The specified Name value exceeds the maximum length of {MAX_NAME} characters.")
        if not _URL_FRIENDLY.match(name) or name in (".", ".."):
            return self._invalid(request, "Name", name, "The specified Name value is not a valid URI last segment.")
        url = urlsplit(issuer)
        if url.scheme not in ("https", "http") or not url.netloc or any(ch.isspace() for ch in issuer):
            return self._invalid(request, "Issuer", issuer, "The specified Issuer value is not a valid URL.")
        for param, value in (("Issuer", issuer), ("Subject", subject), ("Description", cred.get("description") or "")):
            if len(value) > MAX_VALUE:
                return self._invalid(request, param, value[:40] + "…", f"The specified {param} value exceeds the maximum length of {MAX_VALUE} characters.")
        audiences = cred["audiences"]
        if len(audiences) != 1:
            return self._invalid(request, "Audiences", json.dumps(audiences), "Federated identity credentials must have exactly 1 audience.")
        if not audiences[0] or len(audiences[0]) > MAX_VALUE:
            return self._invalid(request, "Audiences", audiences[0][:40], f"The specified Audiences value must be 1 to {MAX_VALUE} characters long.")
        others = [c for c in self._creds(app) if c["id"] != own_id]
        if any(c["name"].lower() == name.lower() for c in others):
            return graph_error(request, 409, "Request_MultipleObjectsWithSameKeyValue", f"FederatedIdentityCredential with name {name} already exists.")
        if any(c["issuer"] == issuer and c["subject"] == subject for c in others):
            return self._invalid(
                request, "Subject", subject,
                f"The combination of issuer and subject must be unique for the application. Issuer {issuer} and Subject: {subject} already exist.",
            )
        return None
