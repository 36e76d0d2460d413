"""The read-only portal pages (`SANDBOX_PORTAL_URL`, plain HTTP): app registrations and agents as the Entra
admin center and Copilot Studio show them, every value escaped, never a secret, 404 for unknown ids."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import httpx

from sandbox import Sandbox
from tests.fixtures.sandbox import sandbox_http

from .helpers import APP_BODY, env_url, graph_url, token

API = "/api/data/v9.2"
HOSTILE = '<script>alert("x")</script> & Co'


class _Collect(HTMLParser):
    """The tags and text of a page, to check what it really contains."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.links: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.links += [v or "" for k, v in attrs if k in ("href", "src")]

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _parse(html: str) -> _Collect:
    page = _Collect()
    page.feed(html)
    return page


async def test_the_app_registration_page(sandbox: Sandbox) -> None:
    portal = sandbox.env["SANDBOX_PORTAL_URL"]
    assert portal.startswith("http://127.0.0.1:")
    async with sandbox_http(sandbox) as http:
        gh = {"Authorization": f"Bearer {await token(sandbox)}"}
        app = (await http.post(graph_url(sandbox, "applications"), json=APP_BODY | {"displayName": HOSTILE}, headers=gh)).json()
        end = (datetime.now(timezone.utc) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
        cred = (await http.post(graph_url(sandbox, f"applications/{app['id']}/addPassword"),
                                json={"passwordCredential": {"displayName": "copilot", "endDateTime": end}}, headers=gh)).json()
        fic = {"name": "copilot-studio", "issuer": "https://login.example.com/t/v2.0", "subject": "/eid1/c/pub/t/x", "audiences": ["api://AzureADTokenExchange"]}
        assert (await http.post(graph_url(sandbox, f"applications/{app['id']}/federatedIdentityCredentials"), json=fic, headers=gh)).status_code == 201
    async with httpx.AsyncClient(timeout=10) as plain:
        page = await plain.get(f"{portal}/applications/{app['appId']}")
        index = await plain.get(f"{portal}/")
        missing = await plain.get(f"{portal}/applications/00000000-0000-0000-0000-000000000000")
        nowhere = await plain.get(f"{portal}/nowhere")
    html = page.text
    parsed = _parse(html)
    assert page.status_code == 200 and page.headers["Content-Type"].startswith("text/html")
    assert "script" not in parsed.tags and HOSTILE in "".join(parsed.text) and "&lt;script&gt;" in html
    assert not [link for link in parsed.links if link.startswith(("http:", "https:", "//"))]  # no external resources
    for value in (app["appId"], app["id"], "AzureADMultipleOrgs", "https://europe.token.botframework.com/.auth/web/redirect",
                  cred["hint"], cred["endDateTime"], "copilot-studio", "https://login.example.com/t/v2.0", "/eid1/c/pub/t/x",
                  "api://AzureADTokenExchange", "Copilot Setup Bot provisioning (sandbox)"):
        assert value in html, value
    assert cred["secretText"] not in html
    assert index.status_code == 200 and f"/applications/{app['appId']}" in index.text
    assert missing.status_code == nowhere.status_code == 404 and "Not found" in missing.text


async def test_the_agent_page(sandbox: Sandbox) -> None:
    portal = sandbox.env["SANDBOX_PORTAL_URL"]
    async with sandbox_http(sandbox) as http:
        dh = {"Authorization": f"Bearer {await token(sandbox, env_url(sandbox))}"}
        bot = (await http.get(f"{env_url(sandbox)}{API}/bots", params={"$filter": "schemaname eq 'cr6a1_contosoHrHelpdesk'"}, headers=dh)).json()["value"][0]
        plain_bot = (await http.get(f"{env_url(sandbox)}{API}/bots", params={"$filter": "schemaname eq 'cr6a1_contosoSupport'"}, headers=dh)).json()["value"][0]
        await http.post(f"{sandbox.url}/_sandbox/bots/{plain_bot['botid']}/secured-access", json={"enabled": True})
    async with httpx.AsyncClient(timeout=10) as plain:
        set_up = await plain.get(f"{portal}/agents/{bot['botid']}")
        not_set_up = await plain.get(f"{portal}/agents/{plain_bot['botid'].upper()}")
        missing = await plain.get(f"{portal}/agents/00000000-0000-0000-0000-000000000000")
    text = " ".join(" ".join(_parse(set_up.text).text).split())
    other = " ".join(" ".join(_parse(not_set_up.text).text).split())
    assert set_up.status_code == not_set_up.status_code == 200
    assert "Contoso HR Helpdesk" in text and "Contoso (sandbox)" in text and env_url(sandbox) in text
    assert "Authentication CustomAzureActiveDirectory" in text and "Connected Yes" in text and bot["publishedon"] in text
    assert "Authentication Integrated" in other and "Connected No" in other and "Require secured access Yes In effect No" in other
    assert missing.status_code == 404
