"""Operator endpoint, app registrations: what someone editing in the Entra admin center does, bypassing
Graph's owner checks (drift and "adopt only what is ours" for day-two tests).

- `POST /_sandbox/applications` `{"uniqueName","displayName"}`: an app registration made by someone else
- `PATCH /_sandbox/applications/{appId}`: a partial application body, merged as Graph's PATCH does
- `DELETE /_sandbox/applications/{appId}/federatedIdentityCredentials/{name}`: remove a federated credential
Each answers the changed application as `GET /_sandbox/state` shows it.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from aiohttp import web

from . import schema
from .graph_directory import SOMEONE_ELSE
from .graph_model import deep_merge, new_application
from .operator_base import find_application, problem, read_json
from .snapshot import application_state

if TYPE_CHECKING:
    from .app import Sandbox
    from .graph import Graph


class Drift:
    def __init__(self, sandbox: "Sandbox") -> None:
        self.sb = sandbox

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/_sandbox/applications", self.create_application),
            web.patch("/_sandbox/applications/{appId}", self.patch_application),
            web.delete("/_sandbox/applications/{appId}/federatedIdentityCredentials/{name}", self.delete_federated_credential),
        ]

    @property
    def graph(self) -> "Graph":
        assert self.sb.graph is not None
        return self.sb.graph

    async def someone_else(self) -> dict[str, Any]:
        """The person who registers apps by hand in this tenant: not the provisioning client, nor owned by it."""
        person = self.sb.store.get("meta", SOMEONE_ELSE)
        if person is None:
            person = {"id": str(uuid.uuid4()), "displayName": "Megan Bowen", "userPrincipalName": f"MeganB@{self.graph.publisher_domain}"}
            await self.sb.store.put("meta", SOMEONE_ELSE, person)
        return person

    async def create_application(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        display_name = str(body.get("displayName") or "").strip()
        unique_name = body.get("uniqueName")
        if not display_name or len(display_name) > 120:
            return problem(400, "displayName is required (at most 120 characters)")
        if unique_name is not None and (not isinstance(unique_name, str) or not 0 < len(unique_name) <= 120):
            return problem(400, "uniqueName must be 1 to 120 characters")
        async with self.graph.lock:
            if unique_name and self.graph.find("uniqueName", unique_name):
                return problem(409, f"an application with uniqueName {unique_name!r} exists already")
            owner = await self.someone_else()
            app = new_application(display_name, owner["id"], self.graph.publisher_domain, self.sb.clock.now())
            app["uniqueName"] = unique_name
            await self.sb.store.put("application", app["id"], app)
        return web.json_response(application_state(app), status=201)

    async def patch_application(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        problems = schema.errors("request.applications.update", body)
        if problems:
            return problem(400, schema.graph_message(problems[0]))
        if "passwordCredentials" in body:
            return problem(400, "client secrets are added and removed with addPassword and removePassword, not PATCH")
        async with self.graph.lock:
            app = find_application(self.sb, request.match_info["appId"])
            if app is None:
                return problem(404, f"no app registration with client id {request.match_info['appId']}")
            deep_merge(app, {k: v for k, v in body.items() if not k.startswith("@")})
            await self.sb.store.put("application", app["id"], app)
        return web.json_response(application_state(app))

    async def delete_federated_credential(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        async with self.graph.lock:
            app = find_application(self.sb, request.match_info["appId"])
            if app is None:
                return problem(404, f"no app registration with client id {request.match_info['appId']}")
            creds = app.get("_federated", [])
            remaining = [c for c in creds if c["name"].lower() != name.lower()]
            if len(remaining) == len(creds):
                return problem(404, f"app registration {app['appId']} has no federated credential named {name!r}")
            app["_federated"] = remaining
            await self.sb.store.put("application", app["id"], app)
        return web.json_response(application_state(app))
