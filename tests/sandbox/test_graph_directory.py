"""Graph v1.0 owners of an application, and the tenant policy that blocks client secrets (option, CLI flag,
`PUT /_sandbox/policy`), over real HTTPS."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jwt
import pytest

from sandbox import Sandbox
from sandbox.__main__ import parse_args
from tests.fixtures.sandbox import acquire_token, sandbox_http, sandbox_options

from .helpers import APP_BODY, GRAPH, graph_url, new_client, token

SOON = (datetime.now(timezone.utc) + timedelta(days=180)).strftime("%Y-%m-%dT%H:%M:%SZ")  # within the 365-day policy
FIC = {"name": "copilot-studio", "issuer": "https://login.example.com/t/v2.0", "subject": "agent", "audiences": ["api://AzureADTokenExchange"]}


async def _auth(sb: Sandbox, **kw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await token(sb, **kw)}"}


@pytest.fixture
async def blocking(tmp_path: Path) -> AsyncIterator[Sandbox]:
    """A tenant whose app-management policy blocks client secrets."""
    sb = Sandbox(sandbox_options(tmp_path / "blocking", block_password_addition=True))
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


async def test_owners_are_the_creating_clients_service_principal(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = await _auth(sandbox)
        mine = (await http.post(graph_url(sandbox, "applications"), json=APP_BODY, headers=h)).json()
        admin_id, admin_secret = await new_client(http, sandbox, ["Application.ReadWrite.All"])
        admin = await _auth(sandbox, client_id=admin_id, secret=admin_secret)
        theirs = (await http.post(graph_url(sandbox, "applications"), json=APP_BODY, headers=admin)).json()
        owners = (await http.get(graph_url(sandbox, f"applications/{mine['id']}/owners"), headers=h)).json()
        selected = (await http.get(graph_url(sandbox, f"applications(appId='{mine['appId']}')/owners"),
                                   params={"$select": "id,appId,displayName"}, headers=h)).json()
        their_owners = (await http.get(graph_url(sandbox, f"applications/{theirs['id']}/owners"), headers=admin)).json()
        not_mine = await http.get(graph_url(sandbox, f"applications/{theirs['id']}/owners"), headers=h)
        bad_select = await http.get(graph_url(sandbox, f"applications/{mine['id']}/owners"), params={"$select": "colour"}, headers=h)
    my_sp = jwt.decode((await asyncio.to_thread(acquire_token, sandbox, GRAPH))["access_token"], options={"verify_signature": False})["oid"]
    [owner] = owners["value"]
    assert owners["@odata.context"].endswith("$metadata#directoryObjects")
    assert owner["@odata.type"] == "#microsoft.graph.servicePrincipal"
    assert owner["id"] == my_sp and owner["appId"] == sandbox.env["PROVISIONING_CLIENT_ID"]
    assert owner["displayName"] == "Copilot Setup Bot provisioning (sandbox)"
    assert selected["value"] == [{"@odata.type": "#microsoft.graph.servicePrincipal", "id": my_sp,
                                  "appId": sandbox.env["PROVISIONING_CLIENT_ID"], "displayName": owner["displayName"]}]
    assert [o["appId"] for o in their_owners["value"]] == [admin_id]
    assert not_mine.status_code == 403 and not_mine.json()["error"]["code"] == "Authorization_RequestDenied"
    assert bad_select.status_code == 400 and bad_select.json()["error"]["code"] == "Request_UnsupportedQuery"


async def test_an_app_registered_by_someone_else_is_owned_by_that_person(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        made = (await http.post(f"{sandbox.url}/_sandbox/applications", json={"uniqueName": "cps-auth-x", "displayName": "Made by hand"})).json()
        admin_id, admin_secret = await new_client(http, sandbox, ["Application.ReadWrite.All"])
        owners = (await http.get(graph_url(sandbox, f"applications/{made['id']}/owners"), params={"$select": "id,appId,displayName"},
                                 headers=await _auth(sandbox, client_id=admin_id, secret=admin_secret))).json()
    [owner] = owners["value"]
    assert owner["@odata.type"] == "#microsoft.graph.user" and owner["displayName"] and "appId" not in owner


async def test_a_tenant_that_blocks_client_secrets(blocking: Sandbox) -> None:
    async with sandbox_http(blocking) as http:
        h = await _auth(blocking)
        policy = (await http.get(graph_url(blocking, "policies/defaultAppManagementPolicy"), headers=h)).json()
        app = (await http.post(graph_url(blocking, "applications"), json=APP_BODY, headers=h)).json()
        refused = await http.post(graph_url(blocking, f"applications/{app['id']}/addPassword"),
                                  json={"passwordCredential": {"displayName": "x", "endDateTime": SOON}}, headers=h)
        federated = await http.post(graph_url(blocking, f"applications/{app['id']}/federatedIdentityCredentials"), json=FIC, headers=h)
        secrets_left = (await http.get(graph_url(blocking, f"applications/{app['id']}"), headers=h)).json()["passwordCredentials"]
        lifted = await http.put(f"{blocking.url}/_sandbox/policy", json={"block_password_addition": False})
        after = (await http.get(graph_url(blocking, "policies/defaultAppManagementPolicy"), headers=h)).json()
        allowed = await http.post(graph_url(blocking, f"applications/{app['id']}/addPassword"),
                                  json={"passwordCredential": {"displayName": "x", "endDateTime": SOON}}, headers=h)
    restriction = next(r for r in policy["applicationRestrictions"]["passwordCredentials"] if r["restrictionType"] == "passwordAddition")
    assert restriction["state"] == "enabled" and restriction["maxLifetime"] is None and "restrictForAppsCreatedAfterDateTime" in restriction
    assert policy["isEnabled"] is True
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "CredentialTypeNotAllowedAsPerAppPolicy"
    assert refused.json()["error"]["message"] == "Credential type not allowed as per assigned policy."
    assert federated.status_code == 201 and secrets_left == []
    assert lifted.status_code == 200 and lifted.json()["block_password_addition"] is False
    assert [r["restrictionType"] for r in after["applicationRestrictions"]["passwordCredentials"]] == ["passwordLifetime"]
    assert allowed.status_code == 200


async def test_policy_is_changeable_at_run_time_and_spares_older_apps(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = await _auth(sandbox)
        app = (await http.post(graph_url(sandbox, "applications"), json=APP_BODY, headers=h)).json()
        on = await http.put(f"{sandbox.url}/_sandbox/policy", json={"block_password_addition": True, "password_addition_applies_after": "2099-01-01T00:00:00Z"})
        body = {"passwordCredential": {"displayName": "x", "endDateTime": SOON}}
        older_app = await http.post(graph_url(sandbox, f"applications/{app['id']}/addPassword"), json=body, headers=h)
        everyone = await http.put(f"{sandbox.url}/_sandbox/policy", json={"password_addition_applies_after": None})
        blocked = await http.post(graph_url(sandbox, f"applications/{app['id']}/addPassword"), json=body, headers=h)
        bad = [await http.put(f"{sandbox.url}/_sandbox/policy", json=b) for b in
               ({"block_password_addition": "yes"}, {"max_password_lifetime": "1 year"}, {"chaos": 1}, {"password_addition_applies_after": "soon"})]
        current = (await http.get(f"{sandbox.url}/_sandbox/policy")).json()
    assert on.status_code == everyone.status_code == 200
    assert older_app.status_code == 200  # created before the enforcement date
    assert blocked.status_code == 400 and blocked.json()["error"]["code"] == "CredentialTypeNotAllowedAsPerAppPolicy"
    assert all(r.status_code == 400 and r.json()["error"] for r in bad)
    assert current == {"max_password_lifetime": "P365D", "block_password_addition": True, "password_addition_applies_after": None}


def test_cli_flags_for_the_policy_and_the_portal() -> None:
    options = parse_args(["--block-password-addition", "--portal-port", "8123"])
    default = parse_args([])
    assert options.block_password_addition is True and options.portal_port == 8123
    assert default.block_password_addition is False and default.portal_port == 0
