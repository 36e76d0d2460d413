"""Small helpers for the sandbox's own tests: tokens and authenticated calls over real HTTPS."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from sandbox import Sandbox
from tests.fixtures.sandbox import acquire_token

GRAPH = "https://graph.microsoft.com"


async def token(sb: Sandbox, resource: str = GRAPH, **kw: Any) -> str:
    result = await asyncio.to_thread(acquire_token, sb, resource, **kw)
    assert "access_token" in result, result
    return str(result["access_token"])


def graph_url(sb: Sandbox, path: str) -> str:
    return f"{sb.env['GRAPH_ENDPOINT']}/v1.0/{path}"


def env_url(sb: Sandbox, index: int = 0) -> str:
    return sb.env["DATAVERSE_URL"].split(",")[index]


async def new_client(http: httpx.AsyncClient, sb: Sandbox, roles: list[str], dataverse: dict[str, list[str]] | None = None) -> tuple[str, str]:
    r = await http.post(f"{sb.url}/_sandbox/clients", json={"display_name": "test", "roles": roles, "dataverse_roles": dataverse or {}})
    assert r.status_code == 201, r.text
    body = r.json()
    return body["client_id"], body["client_secret"]


APP_BODY = {
    "displayName": "Contoso Support – Copilot auth",
    "signInAudience": "AzureADMultipleOrgs",
    "web": {
        "redirectUris": ["https://token.botframework.com/.auth/web/redirect", "https://europe.token.botframework.com/.auth/web/redirect"],
        "implicitGrantSettings": {"enableAccessTokenIssuance": True, "enableIdTokenIssuance": True},
    },
    "requiredResourceAccess": [{"resourceAppId": "00000003-0000-0000-c000-000000000000", "resourceAccess": [
        {"id": "37f7f235-527c-4136-accd-4a02d197296e", "type": "Scope"}, {"id": "14dad69e-099b-42c9-810b-d002981feec1", "type": "Scope"}]}],
}


async def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy, within a bounded time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(interval)
