"""Drift injection on the operator endpoint, as someone editing in the portals would (bypassing owner checks),
and app registrations made by someone else, over real HTTPS."""

from __future__ import annotations

from typing import Any

import httpx

from sandbox import Sandbox
from tests.fixtures.sandbox import sandbox_http

from .helpers import APP_BODY, env_url, graph_url, new_client, token

API = "/api/data/v9.2"
FIC = {"name": "copilot-studio", "issuer": "https://login.example.com/t/v2.0", "subject": "agent", "audiences": ["api://AzureADTokenExchange"]}


async def _graph(sb: Sandbox, **kw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await token(sb, **kw)}"}


async def _bot(http: httpx.AsyncClient, sb: Sandbox, schema: str) -> tuple[dict[str, Any], dict[str, str]]:
    h = {"Authorization": f"Bearer {await token(sb, env_url(sb))}"}
    r = await http.get(f"{env_url(sb)}{API}/bots", params={"$filter": f"schemaname eq '{schema}'"}, headers=h)
    return dict(r.json()["value"][0]), h


async def test_editing_an_app_registration_in_the_portal(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        gh = await _graph(sandbox)
        app = (await http.post(graph_url(sandbox, "applications"), json=APP_BODY, headers=gh)).json()
        url = f"{sandbox.url}/_sandbox/applications/{app['appId']}"
        changed = await http.patch(url, json={
            "signInAudience": "AzureADMyOrg",
            "web": {"redirectUris": ["https://token.botframework.com/.auth/web/redirect"],
                    "implicitGrantSettings": {"enableAccessTokenIssuance": False}},
        })
        seen = (await http.get(graph_url(sandbox, f"applications/{app['id']}"), headers=gh)).json()
        invalid = await http.patch(url, json={"signinAudience": "AzureADMyOrg"})
        secrets = await http.patch(url, json={"passwordCredentials": []})
        unknown = await http.patch(f"{sandbox.url}/_sandbox/applications/00000000-0000-0000-0000-000000000000", json={"displayName": "x"})
    assert changed.status_code == 200
    assert changed.json()["appId"] == app["appId"] and changed.json()["signInAudience"] == "AzureADMyOrg"
    assert seen["signInAudience"] == "AzureADMyOrg"
    assert seen["web"]["redirectUris"] == ["https://token.botframework.com/.auth/web/redirect"]
    assert seen["web"]["implicitGrantSettings"] == {"enableAccessTokenIssuance": False, "enableIdTokenIssuance": True}
    assert invalid.status_code == 400 and "Invalid property 'signinAudience'." in invalid.json()["error"]
    assert secrets.status_code == 400 and unknown.status_code == 404


async def test_deleting_a_federated_credential_in_the_portal(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        gh = await _graph(sandbox)
        app = (await http.post(graph_url(sandbox, "applications"), json=APP_BODY, headers=gh)).json()
        fics = graph_url(sandbox, f"applications/{app['id']}/federatedIdentityCredentials")
        assert (await http.post(fics, json=FIC, headers=gh)).status_code == 201
        removed = await http.delete(f"{sandbox.url}/_sandbox/applications/{app['appId']}/federatedIdentityCredentials/copilot-studio")
        again = await http.delete(f"{sandbox.url}/_sandbox/applications/{app['appId']}/federatedIdentityCredentials/copilot-studio")
        left = (await http.get(fics, headers=gh)).json()
    assert removed.status_code == 200 and removed.json()["federatedIdentityCredentials"] == []
    assert again.status_code == 404 and left["value"] == []


async def test_switching_an_agent_back_to_integrated_authentication(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        bot, dh = await _bot(http, sandbox, "cr6a1_contosoHrHelpdesk")  # set up: mode 3 with a connection
        url = f"{sandbox.url}/_sandbox/bots/{bot['botid']}/authentication"
        switched = await http.post(url, json={"mode": 2})
        row, _ = await _bot(http, sandbox, "cr6a1_contosoHrHelpdesk")
        refused = [await http.post(url, json=b) for b in ({"mode": 3}, {"mode": "2"}, {"mode": 7}, {})]
    assert bot["authenticationmode"] == 3 and bot["authenticationconfiguration"]
    assert switched.status_code == 200
    assert switched.json()["mode"] == 2 and switched.json()["connection_name"] is None and switched.json()["published"] is False
    assert row["authenticationmode"] == 2 and row["authenticationconfiguration"] is None and row["authenticationtrigger"] == 0
    assert all(r.status_code == 400 for r in refused)


async def test_disconnecting_customer_service_removes_the_bot_application_user(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        bot, dh = await _bot(http, sandbox, "cr6a1_contosoSupport")
        url = f"{sandbox.url}/_sandbox/bots/{bot['botid']}/customer-service-connection"
        app_id = (await http.post(url)).json()["msdyn_botapplicationid"]
        users = f"{env_url(sandbox)}{API}/systemusers"
        [user] = (await http.get(users, params={"$filter": f"msdyn_botapplicationid eq '{app_id}'"}, headers=dh)).json()["value"]
        ws = (await http.get(f"{env_url(sandbox)}{API}/msdyn_liveworkstreams", headers=dh)).json()["value"][0]
        bind = await http.patch(f"{env_url(sandbox)}{API}/msdyn_liveworkstreams({ws['msdyn_liveworkstreamid']})",
                                json={"msdyn_bot_user@odata.bind": f"/systemusers({user['systemuserid']})"}, headers=dh)
        gone = await http.delete(url)
        after = (await http.get(users, params={"$filter": f"msdyn_botapplicationid eq '{app_id}'"}, headers=dh)).json()["value"]
        ws_after = (await http.get(f"{env_url(sandbox)}{API}/msdyn_liveworkstreams", headers=dh)).json()["value"][0]
        again = await http.delete(url)
    assert bind.status_code == 204
    assert gone.status_code == 200 and gone.json() == {"connected": False, "msdyn_botapplicationid": app_id, "removed_users": 1}
    assert after == [] and ws_after["_msdyn_bot_user_value"] is None
    assert again.status_code == 200 and again.json()["removed_users"] == 0


async def test_an_app_registration_made_by_someone_else_is_not_ours(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        made = await http.post(f"{sandbox.url}/_sandbox/applications", json={"uniqueName": "cps-auth-contoso-support", "displayName": "By hand"})
        duplicate = await http.post(f"{sandbox.url}/_sandbox/applications", json={"uniqueName": "cps-auth-contoso-support", "displayName": "Again"})
        nameless = await http.post(f"{sandbox.url}/_sandbox/applications", json={"uniqueName": "other"})
        ours = await _graph(sandbox)  # Application.ReadWrite.OwnedBy
        listed = (await http.get(graph_url(sandbox, "applications"), params={"$filter": "uniqueName eq 'cps-auth-contoso-support'"}, headers=ours)).json()
        read = await http.get(graph_url(sandbox, "applications(uniqueName='cps-auth-contoso-support')"), headers=ours)
        upsert = await http.patch(graph_url(sandbox, "applications(uniqueName='cps-auth-contoso-support')"), json=APP_BODY,
                                  headers=ours | {"Prefer": "create-if-missing"})
        admin_id, admin_secret = await new_client(http, sandbox, ["Application.ReadWrite.All"])
        admin = (await http.get(graph_url(sandbox, "applications(uniqueName='cps-auth-contoso-support')"),
                                headers=await _graph(sandbox, client_id=admin_id, secret=admin_secret))).json()
    assert made.status_code == 201 and made.json()["uniqueName"] == "cps-auth-contoso-support"
    assert duplicate.status_code == 409 and nameless.status_code == 400
    assert listed["value"] == []
    assert read.status_code == upsert.status_code == 403
    assert admin["id"] == made.json()["id"] and admin["displayName"] == "By hand"
