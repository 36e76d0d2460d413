"""Dataverse Web API v9.2 over real HTTPS: seed data, queries, privileges, publish, errors."""

from __future__ import annotations

import json
from datetime import datetime, timezone

from sandbox import Sandbox
from tests.fixtures.sandbox import sandbox_http

from .helpers import env_url, new_client, token, wait_until

API = "/api/data/v9.2"


async def _h(sb: Sandbox, index: int = 0, **kw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await token(sb, env_url(sb, index), **kw)}"}


async def test_seed_has_agents_to_find(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        r = await http.get(f"{env_url(sandbox)}{API}/bots", params={"$select": "botid,name,schemaname,authenticationmode,publishedon"}, headers=await _h(sandbox))
        other = await http.get(f"{env_url(sandbox, 1)}{API}/bots", params={"$select": "name"}, headers=await _h(sandbox, 1))
    bots = r.json()["value"]
    assert r.status_code == 200 and len(bots) >= 3
    assert set(bots[0]) == {"@odata.etag", "botid", "name", "schemaname", "authenticationmode", "publishedon"}
    assert any(len(b["name"]) > 30 for b in bots)
    assert any(b["authenticationmode"] == 3 for b in bots)
    assert [b["name"] for b in other.json()["value"]] == ["Fabrikam Service Desk"]


async def test_filters_select_and_single_row(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = await _h(sandbox)
        hit = (await http.get(f"{env_url(sandbox)}{API}/bots", params={"$filter": "schemaname eq 'cr6a1_contosoSupport'"}, headers=h)).json()["value"]
        by_name = (await http.get(f"{env_url(sandbox)}{API}/bots", params={"$filter": "name eq 'Contoso Support' and ismanaged eq false"}, headers=h)).json()["value"]
        assert len(hit) == 1 and by_name[0]["botid"] == hit[0]["botid"]
        one = await http.get(f"{env_url(sandbox)}{API}/bots({hit[0]['botid']})", params={"$select": "name,authenticationconfiguration"}, headers=h)
        bad_col = await http.get(f"{env_url(sandbox)}{API}/bots", params={"$select": "colour"}, headers=h)
        missing = await http.get(f"{env_url(sandbox)}{API}/bots(00000000-0000-0000-0000-000000000000)", headers=h)
        segment = await http.get(f"{env_url(sandbox)}{API}/robots", headers=h)
    assert one.json()["name"] == "Contoso Support" and one.headers["ETag"]
    assert bad_col.status_code == 400 and bad_col.json()["error"]["code"].startswith("0x")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "0x80040217"
    assert segment.status_code == 404
    assert missing.headers["x-ms-service-request-id"]


async def test_token_for_another_environment_is_401(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        r = await http.get(f"{env_url(sandbox)}{API}/bots", headers=await _h(sandbox, 1))
        none = await http.get(f"{env_url(sandbox)}{API}/bots")
    assert r.status_code == 401 and none.status_code == 401
    assert "Bearer authorization_uri=" in r.headers["WWW-Authenticate"]


async def test_non_member_and_read_only_users_are_refused(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        outsider_id, outsider_secret = await new_client(http, sandbox, [])
        reader_id, reader_secret = await new_client(http, sandbox, [], {env_url(sandbox): ["Basic User"]})
        outsider = await http.get(f"{env_url(sandbox)}{API}/WhoAmI", headers=await _h(sandbox, client_id=outsider_id, secret=outsider_secret))
        rh = await _h(sandbox, client_id=reader_id, secret=reader_secret)
        bots = (await http.get(f"{env_url(sandbox)}{API}/bots", headers=rh)).json()["value"]
        patch = await http.patch(f"{env_url(sandbox)}{API}/bots({bots[0]['botid']})", json={"authenticationtrigger": 1}, headers=rh | {"If-Match": "*"})
        publish = await http.post(f"{env_url(sandbox)}{API}/bots({bots[0]['botid']})/Microsoft.Dynamics.CRM.PvaPublish", json={}, headers=rh)
    assert outsider.status_code == 403 and outsider.json()["error"]["code"] == "0x80072560"
    assert patch.status_code == 403 and patch.json()["error"]["code"] == "0x80040220" and "prvWritebot" in patch.json()["error"]["message"]
    assert publish.status_code == 403


async def test_patch_with_if_match_and_invalid_columns(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = await _h(sandbox)
        bot = (await http.get(f"{env_url(sandbox)}{API}/bots", params={"$filter": "schemaname eq 'cr6a1_contosoSupport'"}, headers=h)).json()["value"][0]
        url = f"{env_url(sandbox)}{API}/bots({bot['botid']})"
        ok = await http.patch(url, json={"authenticationtrigger": 1}, headers=h | {"If-Match": "*"})
        stale = await http.patch(url, json={"authenticationtrigger": 0}, headers=h | {"If-Match": bot["@odata.etag"]})
        schema_change = await http.patch(url, json={"schemaname": "x"}, headers=h | {"If-Match": "*"})
        unknown = await http.patch(url, json={"colour": "blue"}, headers=h | {"If-Match": "*"})
        bad_value = await http.patch(url, json={"authenticationmode": 9}, headers=h | {"If-Match": "*"})
        after = (await http.get(url, headers=h)).json()
    assert ok.status_code == 204 and after["authenticationtrigger"] == 1
    assert stale.status_code == 412
    assert schema_change.status_code == unknown.status_code == bad_value.status_code == 400


async def test_publish_completes_after_a_delay(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = await _h(sandbox)
        bot = (await http.get(f"{env_url(sandbox)}{API}/bots", params={"$filter": "schemaname eq 'cr6a1_contosoSupport'"}, headers=h)).json()["value"][0]
        url = f"{env_url(sandbox)}{API}/bots({bot['botid']})"
        requested = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        r = await http.post(f"{url}/Microsoft.Dynamics.CRM.PvaPublish", json={}, headers=h)
        assert r.status_code == 200 and r.json()["PublishedBotContentId"] == "" and r.json()["PublishBotJobResponse"] is None
        busy = await http.post(f"{url}/Microsoft.Dynamics.CRM.PvaPublish", json={}, headers=h)
        assert busy.status_code == 409

        async def published() -> dict[str, object] | None:
            row = (await http.get(url, params={"$select": "publishedon,synchronizationstatus"}, headers=h)).json()
            finished = json.loads(row["synchronizationstatus"])["lastFinishedPublishOperation"]["operationEnd"]
            return row if finished > requested else None

        row = await wait_until(published, timeout=5)
    status = json.loads(str(row["synchronizationstatus"]))
    assert status["lastFinishedPublishOperation"]["status"] == "Succeeded"
    assert status["lastPublishedDetails"]["authenticationMode"] == "Integrated"


async def test_systemusers_workstreams_whoami_organizations(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = await _h(sandbox)
        me = (await http.get(f"{env_url(sandbox)}{API}/WhoAmI", headers=h)).json()
        orgs = (await http.get(f"{env_url(sandbox)}{API}/organizations", params={"$select": "organizationid,name"}, headers=h)).json()["value"]
        bot_users = (await http.get(f"{env_url(sandbox)}{API}/systemusers", params={"$filter": "msdyn_agentType eq 192350001"}, headers=h)).json()["value"]
        app_user = (await http.get(f"{env_url(sandbox)}{API}/systemusers", params={"$filter": f"applicationid eq '{sandbox.env['PROVISIONING_CLIENT_ID']}'"}, headers=h)).json()["value"]
        created = await http.post(f"{env_url(sandbox)}{API}/systemusers", json={"applicationid": "8f4b2a1c-1111-2222-3333-444455556666", "accessmode": 4, "isdisabled": False}, headers=h)
        dup = await http.post(f"{env_url(sandbox)}{API}/systemusers", json={"applicationid": "8f4b2a1c-1111-2222-3333-444455556666"}, headers=h)
        ws = (await http.get(f"{env_url(sandbox)}{API}/msdyn_liveworkstreams", headers=h)).json()["value"][0]
        user_id = created.headers["OData-EntityId"].rsplit("(", 1)[1].rstrip(")")
        bind = await http.patch(f"{env_url(sandbox)}{API}/msdyn_liveworkstreams({ws['msdyn_liveworkstreamid']})", json={"msdyn_bot_user@odata.bind": f"/systemusers({user_id})"}, headers=h)
    assert me["OrganizationId"] == orgs[0]["organizationid"] and me["UserId"] == app_user[0]["systemuserid"]
    assert len(bot_users) == 1 and bot_users[0]["msdyn_botprovider"] == 192350000  # the HR agent is already connected
    assert created.status_code == 204 and dup.status_code == 400
    assert bind.status_code == 204


async def test_organizations_have_friendly_names(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        contoso = (await http.get(f"{env_url(sandbox)}{API}/organizations", params={"$select": "organizationid,friendlyname"}, headers=await _h(sandbox))).json()
        fabrikam = (await http.get(f"{env_url(sandbox, 1)}{API}/organizations", params={"$select": "organizationid,friendlyname"}, headers=await _h(sandbox, 1))).json()
    assert [set(o) for o in contoso["value"]] == [{"@odata.etag", "organizationid", "friendlyname"}]
    assert contoso["value"][0]["friendlyname"] == "Contoso (sandbox)" and fabrikam["value"][0]["friendlyname"] == "Fabrikam (sandbox)"


async def test_publish_409s_while_running_and_for_a_parent_before_its_child(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = await _h(sandbox)
        parent = (await http.get(f"{env_url(sandbox)}{API}/bots", params={"$filter": "schemaname eq 'cr6a1_contosoSupport'"}, headers=h)).json()["value"][0]
        child = await http.post(f"{sandbox.url}/_sandbox/bots", json={"name": "Contoso Orders", "schemaname": "cr6a1_contosoOrders",
                                                                      "parent_botid": parent["botid"]})
        assert child.status_code == 201, child.text
        child_id = child.json()["botid"]
        publish = f"{env_url(sandbox)}{API}/bots({{}})/Microsoft.Dynamics.CRM.PvaPublish"
        parent_first = await http.post(publish.format(parent["botid"]), json={}, headers=h)
        child_publish = await http.post(publish.format(child_id), json={}, headers=h)
        busy = await http.post(publish.format(child_id), json={}, headers=h)
        parent_while_child_runs = await http.post(publish.format(parent["botid"]), json={}, headers=h)

        async def child_published() -> bool:
            row = (await http.get(f"{env_url(sandbox)}{API}/bots({child_id})", params={"$select": "publishedon"}, headers=h)).json()
            return bool(row["publishedon"])

        await wait_until(child_published, timeout=5)
        parent_after = await http.post(publish.format(parent["botid"]), json={}, headers=h)
        bad_parent = await http.post(f"{sandbox.url}/_sandbox/bots", json={"name": "x", "schemaname": "cr6a1_x", "parent_botid": "00000000-0000-0000-0000-000000000000"})
        duplicate = await http.post(f"{sandbox.url}/_sandbox/bots", json={"name": "again", "schemaname": "cr6a1_contosoOrders"})
    for refused in (parent_first, busy, parent_while_child_runs):
        assert refused.status_code == 409
        assert set(refused.json()) == {"error"} and set(refused.json()["error"]) == {"code", "message"}
        assert refused.json()["error"]["code"] == "0x80040265"
    assert "ExternalServiceException" in parent_first.json()["error"]["message"] and "Contoso Orders" in parent_first.json()["error"]["message"]
    assert "NotAcceptedAlreadyRunning" in busy.json()["error"]["message"]
    assert child_publish.status_code == parent_after.status_code == 200
    assert bad_parent.status_code == 404 and duplicate.status_code == 409
