"""Read-only portal pages for the sandbox's own objects (`SANDBOX_PORTAL_URL`, plain HTTP on 127.0.0.1), so
the links in the bot's cards lead somewhere real when it runs against the sandbox.

- `GET /` – every app registration and agent, linked
- `GET /applications/{appId}` – like the Entra admin center's App registration overview
- `GET /agents/{botid}` – like Copilot Studio's agent settings
Unknown ids get a 404 page. Every value is escaped; the HTML has no scripts and no external resources.
"""

from __future__ import annotations

from html import escape
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .copilot_studio import authentication_view
from .graph_credentials import public_credential
from .operator_base import find_application

if TYPE_CHECKING:
    from .app import Sandbox

STYLE = ("body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#222}"
         "h1{font-size:1.5rem}h2{font-size:1.1rem;margin-top:1.6rem}table{border-collapse:collapse;width:100%}"
         "th,td{text-align:left;padding:.3rem .6rem;border-bottom:1px solid #ddd;vertical-align:top}th{width:16rem;color:#555}"
         "code{font-size:.9em;word-break:break-all}.note{color:#666}")


def _v(value: Any) -> str:
    if value is None or value == "" or value == []:
        return '<span class="note">—</span>'
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, list):
        return "<br>".join(f"<code>{escape(str(v))}</code>" for v in value)
    return escape(str(value))


def _rows(pairs: list[tuple[str, Any]]) -> str:
    return "<table>" + "".join(f"<tr><th>{escape(k)}</th><td>{_v(v)}</td></tr>" for k, v in pairs) + "</table>"


def _table(headers: list[str], rows: list[list[Any]], empty: str) -> str:
    if not rows:
        return f'<p class="note">{escape(empty)}</p>'
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{_v(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _page(title: str, body: str, status: int = 200) -> web.Response:
    html = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)} – sandbox portal</title>'
            f'<style>{STYLE}</style></head><body><p class="note"><a href="/">Sandbox portal</a> · read-only</p>{body}</body></html>')
    return web.Response(text=html, content_type="text/html", status=status,
                        headers={"Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"})


class Portal:
    def __init__(self, sandbox: "Sandbox") -> None:
        self.sb = sandbox

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/", self.index),
            web.get("/applications/{appId}", self.application),
            web.get("/agents/{botid}", self.agent),
            web.route("*", "/{tail:.*}", self.not_found),
        ]

    async def not_found(self, request: web.Request, what: str = "page") -> web.Response:
        return _page("Not found", f"<h1>Not found</h1><p>There is no {escape(what)} here.</p>", status=404)

    async def index(self, request: web.Request) -> web.Response:
        apps = [[f"{a['displayName']}", a["appId"]] for a in self.sb.store.all("application")]
        app_links = "".join(f'<li><a href="/applications/{escape(a[1])}">{escape(a[0])}</a> <code>{escape(a[1])}</code></li>' for a in apps)
        agent_links = ""
        for env in self.sb.environments.values():
            for b in await env.bots():
                agent_links += f'<li><a href="/agents/{escape(b["botid"])}">{escape(b["name"])}</a> ({escape(env.name)})</li>'
        body = (f"<h1>Sandbox portal</h1><h2>App registrations</h2><ul>{app_links or '<li class=note>none yet</li>'}</ul>"
                f"<h2>Agents</h2><ul>{agent_links}</ul>")
        return _page("Sandbox portal", body)

    async def application(self, request: web.Request) -> web.Response:
        app = find_application(self.sb, request.match_info["appId"])
        if app is None:
            return await self.not_found(request, "app registration with this client ID")
        assert self.sb.graph is not None
        owner = self.sb.graph.directory.owner_object(app.get("_owner"))
        web_ = app.get("web") or {}
        grant = web_.get("implicitGrantSettings") or {}
        secrets = [[p.get("displayName"), f"{p.get('hint') or ''}********", p.get("startDateTime"), p.get("endDateTime"), p.get("keyId")]
                   for p in app.get("passwordCredentials", [])]
        feds = [[c["name"], c["issuer"], c["subject"], c["audiences"], c.get("description")]
                for c in map(public_credential, app.get("_federated", []))]
        body = (
            f"<h1>{escape(app['displayName'])}</h1><h2>Overview</h2>"
            + _rows([("Display name", app["displayName"]), ("Application (client) ID", app["appId"]),
                     ("Object ID", app["id"]), ("Directory (tenant) ID", self.sb.entra.tenant_id if self.sb.entra else None),
                     ("Unique name", app.get("uniqueName")), ("Supported account types", app.get("signInAudience")),
                     ("Created", app.get("createdDateTime"))])
            + "<h2>Authentication</h2>"
            + _rows([("Web redirect URIs", web_.get("redirectUris") or []),
                     ("Implicit grant: access tokens", bool(grant.get("enableAccessTokenIssuance"))),
                     ("Implicit grant: ID tokens", bool(grant.get("enableIdTokenIssuance")))])
            + "<h2>Certificates &amp; secrets: client secrets</h2>"
            + _table(["Description", "Value", "Starts", "Expires", "Secret ID"], secrets, "No client secrets.")
            + "<h2>Certificates &amp; secrets: federated credentials</h2>"
            + _table(["Name", "Issuer", "Subject identifier", "Audience", "Description"], feds, "No federated credentials.")
            + "<h2>Owners</h2>"
            + _table(["Name", "Type", "Object ID", "Application ID"],
                     [[owner["displayName"], owner["@odata.type"].rsplit(".", 1)[-1], owner["id"], owner.get("appId")]] if owner else [],
                     "No owners.")
        )
        return _page(app["displayName"], body)

    async def agent(self, request: web.Request) -> web.Response:
        found = None
        for env in self.sb.environments.values():
            bot = await env.bot(request.match_info["botid"].lower())
            if bot is not None:
                found = env, bot
        if found is None:
            return await self.not_found(request, "agent with this bot ID")
        env, bot = found
        org = self.sb.store.get("organization", env.name) or {}
        auth = authentication_view(bot)
        client = auth["client_id"]
        secured = self.sb.store.get("secured_access", bot["botid"]) or {}
        delay = self.sb.options.propagation_delay.total_seconds()
        in_effect = bool(secured.get("enabled")) and self.sb.clock.now() >= secured.get("requested_at", 0) + delay
        users = [u for u in env.systemusers() if u.get("msdyn_botapplicationid") == bot["_registration_app_id"] and u.get("msdyn_agentType") == 192350001]
        client_link = (f'<a href="/applications/{escape(client)}">{escape(client)}</a>'
                       if client and find_application(self.sb, client) else _v(client))
        body = (
            f"<h1>{escape(bot['name'])}</h1><h2>Details</h2>"
            + _rows([("Name", bot["name"]), ("Schema name", bot["schemaname"]), ("Bot ID", bot["botid"]),
                     ("Environment", org.get("friendlyname") or env.name), ("Environment URL", env.origin),
                     ("Parent agent", bot.get("_parent_botid"))])
            + "<h2>Security: authentication</h2>"
            + _rows([("Authentication", auth["mode_name"]), ("Service provider", auth["service_provider"]),
                     ("Require users to sign in", auth["require_sign_in"]), ("Credential", auth["credential_kind"])])
            + f"<table><tr><th>Client ID</th><td>{client_link}</td></tr></table>"
            + _rows([("Federated credential issuer", auth["issuer"]), ("Federated credential value", auth["subject"]),
                     ("Changes published", auth["published"])])
            + "<h2>Security: web channel security</h2>"
            + _rows([("Require secured access", bool(secured.get("enabled"))), ("In effect", in_effect),
                     ("Changed", self.sb.clock.iso(secured["requested_at"]) if secured.get("requested_at") else None)])
            + "<h2>Channels: Dynamics 365 Customer Service</h2>"
            + _rows([("Connected", bool(users)), ("Bot application ID", bot["_registration_app_id"] if users else None)])
            + "<h2>Publish</h2>"
            + _rows([("Last published", bot.get("publishedon")), ("Publishing now", bool(bot.get("_publish_due"))),
                     ("Published authentication", auth["published_mode_name"])])
        )
        return _page(bot["name"], body)
