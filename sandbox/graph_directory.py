"""Graph v1.0 beyond the application object itself: service principals, an application's owners and the
tenant's default app-management policy.

Owners (Graph docs `application-list-owners`): the directory objects that own the application. The sandbox
records the creating identity; an app-only client is represented by its service principal
(`#microsoft.graph.servicePrincipal`, `appId` = its client id), the "someone else" of the operator endpoint
by a user.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .entra import TokenInfo
from .errors import graph_error
from .graph_model import public
from .identity import GRAPH_APP_ID

if TYPE_CHECKING:
    from .graph import Graph

OPENID_SCOPE_ID = "37f7f235-527c-4136-accd-4a02d197296e"
PROFILE_SCOPE_ID = "14dad69e-099b-42c9-810b-d002981feec1"
OWNER_PROPERTIES = {"id", "appId", "displayName", "servicePrincipalType", "accountEnabled", "userPrincipalName", "mail", "deletedDateTime"}
SOMEONE_ELSE = "someone_else"  # meta document: the person who made app registrations by hand in the portal


class Directory:
    def __init__(self, graph: "Graph") -> None:
        self.graph = graph

    # ---- owners ---------------------------------------------------------------------------------------

    def owner_object(self, owner: str | None) -> dict[str, Any] | None:
        if not owner:
            return None
        client = self.graph.store.get("client", owner)
        if client is not None:
            return {
                "@odata.type": "#microsoft.graph.servicePrincipal", "id": client["service_principal_id"], "deletedDateTime": None,
                "accountEnabled": True, "appId": client["client_id"], "displayName": client["display_name"],
                "servicePrincipalType": "Application",
            }
        person = self.graph.store.get("meta", SOMEONE_ELSE)
        if person is not None and person["id"] == owner:
            return {"@odata.type": "#microsoft.graph.user", "id": person["id"], "deletedDateTime": None,
                    "displayName": person["displayName"], "userPrincipalName": person["userPrincipalName"], "mail": None}
        return None

    async def owners(self, request: web.Request, app: dict[str, Any]) -> web.Response:
        select = [f.strip() for f in request.query.get("$select", "").split(",") if f.strip()]
        for f in select:
            if f not in OWNER_PROPERTIES:
                return graph_error(request, 400, "Request_UnsupportedQuery", f"Property '{f}' does not exist as a declared property or extension property.")
        owner = self.owner_object(app.get("_owner"))
        value = [owner] if owner else []
        if select:
            value = [{"@odata.type": o["@odata.type"]} | {k: o[k] for k in select if k in o} for o in value]
        return web.json_response({"@odata.context": self.graph.context("directoryObjects"), "value": value})

    # ---- service principals -----------------------------------------------------------------------------

    async def get_service_principal(self, request: web.Request, token: TokenInfo) -> web.Response:
        m = re.fullmatch(r"servicePrincipals\(appId='([^']*)'\)", request.match_info["path"])
        app_id = m.group(1) if m else ""
        if app_id == GRAPH_APP_ID:
            return web.json_response(self._graph_service_principal())
        for sp in self.graph.store.all("service_principal"):
            if sp["appId"] == app_id and not self.graph.replicating(sp.get("_created")):
                return web.json_response(public(sp) | {"@odata.context": self.graph.context("servicePrincipals/$entity")})
        return self.graph.not_found(request, app_id)

    def _graph_service_principal(self) -> dict[str, Any]:
        return {
            "@odata.context": self.graph.context("servicePrincipals/$entity"),
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, self.graph.publisher_domain + "/graph")),
            "appId": GRAPH_APP_ID,
            "appDisplayName": "Microsoft Graph",
            "displayName": "Microsoft Graph",
            "servicePrincipalType": "Application",
            "oauth2PermissionScopes": [
                {"id": OPENID_SCOPE_ID, "value": "openid", "type": "User", "isEnabled": True,
                 "adminConsentDisplayName": "Sign users in", "adminConsentDescription": "Allows users to sign in to the app with their work or school accounts and allows the app to see basic user profile information.",
                 "userConsentDisplayName": "Sign you in", "userConsentDescription": "Allows you to sign in to the app with your work or school account and allows the app to read your basic profile information."},
                {"id": PROFILE_SCOPE_ID, "value": "profile", "type": "User", "isEnabled": True,
                 "adminConsentDisplayName": "View users' basic profile", "adminConsentDescription": "Allows the app to see your users' basic profile (e.g., name, picture, user name, email address)",
                 "userConsentDisplayName": "View your basic profile", "userConsentDescription": "Allows the app to see your basic profile (e.g., name, picture, user name, email address)"},
            ],
        }

    async def create_service_principal(self, request: web.Request, token: TokenInfo) -> web.Response:
        body, err = await self.graph.body(request, "request.servicePrincipals.create")
        if err:
            return err
        assert body is not None
        app_id = body["appId"]
        app = self.graph.find("appId", app_id)
        if app is None or self.graph.replicating(app.get("_created")):
            return graph_error(
                request, 400, "Request_BadRequest",
                f"The appId '{app_id}' of the service principal does not reference a valid application object.",
                details=[{"code": "NoBackingApplicationObject", "message": "The appId of the service principal does not reference a valid application object.", "target": "appId"}],
            )
        if not self.graph.visible(app, token):
            return graph_error(request, 403, "Authorization_RequestDenied", "When using this permission, the backing application of the service principal being created must in the local tenant")
        if any(sp["appId"] == app_id for sp in self.graph.store.all("service_principal")):
            return graph_error(request, 409, "Request_MultipleObjectsWithSameKeyValue", "Another object with the same value for property servicePrincipalNames already exists.")
        sp = {
            "id": str(uuid.uuid4()),
            "appId": app_id,
            "appDisplayName": app["displayName"],
            "displayName": app["displayName"],
            "accountEnabled": True,
            "servicePrincipalType": "Application",
            "signInAudience": app.get("signInAudience"),
            "appOwnerOrganizationId": self.graph.entra.tenant_id,
            "servicePrincipalNames": [app_id],
            "tags": [],
            "_owner": token.client_id,
            "_created": self.graph.clock.now(),
        }
        await self.graph.store.put("service_principal", sp["id"], sp)
        return web.json_response(public(sp) | {"@odata.context": self.graph.context("servicePrincipals/$entity")}, status=201)

    # ---- policy -------------------------------------------------------------------------------------------

    async def get_policy(self, request: web.Request, token: TokenInfo) -> web.Response:
        restrictions = self.graph.policy.restrictions()
        return web.json_response({
            "@odata.context": self.graph.context("policies/defaultAppManagementPolicy/$entity"),
            "id": self.graph.entra.tenant_id,
            "displayName": "Default app management tenant policy",
            "description": "Default tenant policy that enforces app management restrictions on applications and service principals.",
            "isEnabled": bool(restrictions),
            "applicationRestrictions": {"passwordCredentials": restrictions, "keyCredentials": []},
            "servicePrincipalRestrictions": {"passwordCredentials": [], "keyCredentials": []},
        })
