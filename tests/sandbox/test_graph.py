"""Graph v1.0 applications over real HTTPS: success and error paths, upsert, passwords, owners, schema."""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from sandbox import Sandbox, schema
from tests.fixtures.sandbox import sandbox_http

from .helpers import APP_BODY, env_url, graph_url, new_client, token


def valid(definition: str, body: object) -> None:
    problems = schema.errors(definition, body)
    assert not problems, [p.message for p in problems]


async def _auth(sb: Sandbox, **kw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await token(sb, **kw)}"}


async def test_requests_without_a_valid_token_are_401(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        none = await http.get(graph_url(sandbox, "applications"))
        dataverse_token = await token(sandbox, env_url(sandbox))
        wrong_aud = await http.get(graph_url(sandbox, "applications"), headers={"Authorization": f"Bearer {dataverse_token}"})
        garbage = await http.get(graph_url(sandbox, "applications"), headers={"Authorization": "Bearer abc.def.ghi"})
    for r in (none, wrong_aud, garbage):
        assert r.status_code == 401
        valid("microsoft.graph.ODataErrors.ODataError", r.json())
        assert r.json()["error"]["code"] == "InvalidAuthenticationToken"
        assert r.headers["request-id"] == r.json()["error"]["innerError"]["request-id"]
    assert "audience" in wrong_aud.json()["error"]["message"]


async def test_client_without_application_roles_is_403(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        cid, secret = await new_client(http, sandbox, ["Policy.Read.All"])
        r = await http.post(graph_url(sandbox, "applications"), json=APP_BODY, headers=await _auth(sandbox, client_id=cid, secret=secret))
    assert r.status_code == 403
    assert r.json()["error"] == {**r.json()["error"], "code": "Authorization_RequestDenied", "message": "Insufficient privileges to complete the operation."}


async def test_create_get_list_update_delete(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = await _auth(sandbox)
        created = await http.post(graph_url(sandbox, "applications"), json=APP_BODY, headers=h)
        assert created.status_code == 201
        app = created.json()
        valid("response.applications.created", app)
        assert app["web"]["implicitGrantSettings"] == {"enableAccessTokenIssuance": True, "enableIdTokenIssuance": True}
        assert app["signInAudience"] == "AzureADMultipleOrgs"
        got = await http.get(graph_url(sandbox, f"applications/{app['id']}"), headers=h)
        valid("microsoft.graph.application", {k: v for k, v in got.json().items()})
        by_app_id = await http.get(graph_url(sandbox, f"applications(appId='{app['appId']}')"), headers=h)
        assert by_app_id.json()["id"] == app["id"]
        listed = await http.get(graph_url(sandbox, "applications"), params={"$filter": f"displayName eq '{APP_BODY['displayName']}'", "$select": "id,appId,displayName"}, headers=h)
        valid("response.applications.collection", listed.json())
        assert [a["id"] for a in listed.json()["value"]] == [app["id"]]
        assert set(listed.json()["value"][0]) == {"id", "appId", "displayName"}
        patched = await http.patch(graph_url(sandbox, f"applications/{app['id']}"), json={"web": {"redirectUris": ["https://token.botframework.com/.auth/web/redirect"]}}, headers=h)
        assert patched.status_code == 204
        after = (await http.get(graph_url(sandbox, f"applications/{app['id']}"), headers=h)).json()
        assert after["web"]["redirectUris"] == ["https://token.botframework.com/.auth/web/redirect"]
        assert after["web"]["implicitGrantSettings"]["enableIdTokenIssuance"] is True  # omitted properties unchanged
        deleted = await http.delete(graph_url(sandbox, f"applications/{app['id']}"), headers=h)
        assert deleted.status_code == 204
        gone = await http.get(graph_url(sandbox, f"applications/{app['id']}"), headers=h)
        assert gone.status_code == 404 and gone.json()["error"]["code"] == "Request_ResourceNotFound"


async def test_unsupported_queries_are_refused(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = await _auth(sandbox)
        bad_filter = await http.get(graph_url(sandbox, "applications"), params={"$filter": "colour eq 'blue'"}, headers=h)
        bad_select = await http.get(graph_url(sandbox, "applications"), params={"$select": "colour"}, headers=h)
        await http.post(graph_url(sandbox, "applications"), json=APP_BODY, headers=h)
        bad_select_hit = await http.get(graph_url(sandbox, "applications"), params={"$select": "colour"}, headers=h)
        unknown_segment = await http.get(graph_url(sandbox, "applicationz"), headers=h)
    assert bad_filter.status_code == 400 and bad_filter.json()["error"]["code"] == "Request_UnsupportedQuery"
    assert bad_select.status_code == 200  # nothing to select from yet: Graph answers an empty page
    assert bad_select_hit.status_code == 400 and "colour" in bad_select_hit.json()["error"]["message"]
    assert unknown_segment.status_code == 400 and "applicationz" in unknown_segment.json()["error"]["message"]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({**APP_BODY, "signinAudience": "AzureADMyOrg"}, "Invalid property 'signinAudience'."),
        ({**APP_BODY, "web": {"redirectUri": ["https://x.example.com"]}}, "does not exist on type 'Microsoft.DirectoryServices.Web'"),
        ({k: v for k, v in APP_BODY.items() if k != "displayName"}, "A value is required for property 'displayName'"),
        ({**APP_BODY, "signInAudience": "Everyone"}, "Invalid value specified for property 'signInAudience'"),
        ({**APP_BODY, "web": {"redirectUris": ["http://example.com/redirect"]}}, "Invalid value specified for property 'web'"),
        ({**APP_BODY, "appId": "00000000-0000-0000-0000-000000000001"}, "appId"),
        ({**APP_BODY, "displayName": "x" * 257}, "displayName"),
    ],
    ids=["misspelled-top", "misspelled-nested", "missing-name", "bad-audience", "http-redirect", "read-only", "too-long"],
)
async def test_invalid_bodies_get_graphs_400(sandbox: Sandbox, body: dict[str, object], message: str) -> None:
    async with sandbox_http(sandbox) as http:
        r = await http.post(graph_url(sandbox, "applications"), json=body, headers=await _auth(sandbox))
    assert r.status_code == 400
    valid("microsoft.graph.ODataErrors.ODataError", r.json())
    assert r.json()["error"]["code"] == "Request_BadRequest"
    assert message in r.json()["error"]["message"]


async def test_upsert_by_unique_name(sandbox: Sandbox) -> None:
    path = "applications(uniqueName='cps-auth-test')"
    async with sandbox_http(sandbox) as http:
        h = await _auth(sandbox)
        without = await http.patch(graph_url(sandbox, path), json=APP_BODY, headers=h)
        assert without.status_code == 404 and without.json()["error"]["code"] == "Request_ResourceNotFound"
        created = await http.patch(graph_url(sandbox, path), json=APP_BODY, headers=h | {"Prefer": "create-if-missing"})
        assert created.status_code == 201
        valid("response.applications.created", created.json())
        assert created.json()["uniqueName"] == "cps-auth-test"
        again = await http.patch(graph_url(sandbox, path), json={**APP_BODY, "displayName": "Renamed"}, headers=h | {"Prefer": "create-if-missing"})
        assert again.status_code == 204 and again.content == b""
        no_name = await http.patch(graph_url(sandbox, path), json={"signInAudience": "AzureADMyOrg"}, headers=h | {"Prefer": "create-if-missing"})
        assert no_name.status_code == 400
        got = (await http.get(graph_url(sandbox, path), headers=h)).json()
        listed = (await http.get(graph_url(sandbox, "applications"), params={"$filter": "uniqueName eq 'cps-auth-test'"}, headers=h)).json()
    assert got["displayName"] == "Renamed" and got["id"] == created.json()["id"]
    assert len(listed["value"]) == 1


async def test_add_password_returns_the_secret_once_and_remove_password(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = await _auth(sandbox)
        app = (await http.post(graph_url(sandbox, "applications"), json=APP_BODY, headers=h)).json()
        end = (datetime.now(timezone.utc) + timedelta(days=180)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = {"passwordCredential": {"displayName": "copilot-setup", "endDateTime": end}}
        valid("request.applications.addPassword", body)
        added = await http.post(graph_url(sandbox, f"applications/{app['id']}/addPassword"), json=body, headers=h)
        assert added.status_code == 200
        cred = added.json()
        valid("response.applications.addPassword", cred)
        assert cred["hint"] == cred["secretText"][:3] and len(cred["secretText"]) >= 16
        assert cred["endDateTime"] == end
        refused = await http.post(graph_url(sandbox, f"applications/{app['id']}/addPassword"), json={}, headers=h)
        assert refused.status_code == 400  # the default two years exceed the tenant's 365-day policy
        assert sandbox.graph is not None
        sandbox.graph.max_password_lifetime = None  # a tenant without a lifetime policy
        default = (await http.post(graph_url(sandbox, f"applications/{app['id']}/addPassword"), json={}, headers=h)).json()
        lifetime = datetime.fromisoformat(default["endDateTime"].replace("Z", "+00:00")) - datetime.fromisoformat(default["startDateTime"].replace("Z", "+00:00"))
        assert lifetime == timedelta(days=730)
        app_after = await http.get(graph_url(sandbox, f"applications/{app['id']}"), headers=h)
        assert cred["secretText"] not in app_after.text
        assert {p["keyId"] for p in app_after.json()["passwordCredentials"]} == {cred["keyId"], default["keyId"]}
        removed = await http.post(graph_url(sandbox, f"applications/{app['id']}/removePassword"), json={"keyId": cred["keyId"]}, headers=h)
        assert removed.status_code == 204
        unknown = await http.post(graph_url(sandbox, f"applications/{app['id']}/removePassword"), json={"keyId": cred["keyId"]}, headers=h)
        assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "Request_ResourceNotFound"  # a keyId it cannot find
        state = (await http.get(f"{sandbox.url}/_sandbox/state")).text
    assert cred["secretText"] not in state and default["secretText"] not in state


async def test_tenant_policy_limits_secret_lifetime(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = await _auth(sandbox)
        policy = (await http.get(graph_url(sandbox, "policies/defaultAppManagementPolicy"), headers=h)).json()
        assert policy["applicationRestrictions"]["passwordCredentials"][0]["maxLifetime"] == "P365D"
        app = (await http.post(graph_url(sandbox, "applications"), json=APP_BODY, headers=h)).json()
        end = (datetime.now(timezone.utc) + timedelta(days=400)).strftime("%Y-%m-%dT%H:%M:%SZ")
        r = await http.post(graph_url(sandbox, f"applications/{app['id']}/addPassword"), json={"passwordCredential": {"endDateTime": end}}, headers=h)
        cid, secret = await new_client(http, sandbox, ["Application.ReadWrite.OwnedBy"])
        no_policy_role = await http.get(graph_url(sandbox, "policies/defaultAppManagementPolicy"), headers=await _auth(sandbox, client_id=cid, secret=secret))
    assert r.status_code == 400 and r.json()["error"]["code"] == "CredentialInvalidLifetimeAsPerAppPolicy"
    assert no_policy_role.status_code == 403


async def test_owned_by_callers_only_see_and_change_their_own_applications(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        mine = (await http.post(graph_url(sandbox, "applications"), json=APP_BODY, headers=await _auth(sandbox))).json()
        cid, secret = await new_client(http, sandbox, ["Application.ReadWrite.OwnedBy"])
        other = await _auth(sandbox, client_id=cid, secret=secret)
        listed = (await http.get(graph_url(sandbox, "applications"), headers=other)).json()
        read = await http.get(graph_url(sandbox, f"applications/{mine['id']}"), headers=other)
        change = await http.patch(graph_url(sandbox, f"applications/{mine['id']}"), json={"displayName": "hijack"}, headers=other)
        add = await http.post(graph_url(sandbox, f"applications/{mine['id']}/addPassword"), json={}, headers=other)
        cid_all, secret_all = await new_client(http, sandbox, ["Application.ReadWrite.All"])
        admin = (await http.get(graph_url(sandbox, "applications"), headers=await _auth(sandbox, client_id=cid_all, secret=secret_all))).json()
    assert listed["value"] == []
    assert read.status_code == change.status_code == add.status_code == 403
    assert [a["id"] for a in admin["value"]] == [mine["id"]]


async def test_service_principal_create_and_read(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = await _auth(sandbox)
        app = (await http.post(graph_url(sandbox, "applications"), json=APP_BODY, headers=h)).json()
        missing = await http.get(graph_url(sandbox, f"servicePrincipals(appId='{app['appId']}')"), headers=h)
        created = await http.post(graph_url(sandbox, "servicePrincipals"), json={"appId": app["appId"]}, headers=h)
        duplicate = await http.post(graph_url(sandbox, "servicePrincipals"), json={"appId": app["appId"]}, headers=h)
        read = await http.get(graph_url(sandbox, f"servicePrincipals(appId='{app['appId']}')"), headers=h)
        graph_sp = (await http.get(graph_url(sandbox, "servicePrincipals(appId='00000003-0000-0000-c000-000000000000')"), headers=h)).json()
    assert missing.status_code == 404
    assert created.status_code == 201
    valid("response.servicePrincipals.created", created.json())
    assert duplicate.status_code == 409
    assert read.json()["id"] == created.json()["id"]
    assert {s["value"] for s in graph_sp["oauth2PermissionScopes"]} == {"openid", "profile"}


async def test_every_contract_vector(sandbox: Sandbox) -> None:
    """Every test vector from contracts/, through the same validator the sandbox uses."""
    import json

    cases = json.loads((schema.schemas_dir() / "graph-v1-applications.examples.json").read_text())["cases"]
    assert len(cases) >= 31
    for case in cases:
        ok = not schema.errors(case["def"], case["instance"])
        assert ok == case["expectValid"], case["label"]
    # and the request vectors over HTTP: what the schema refuses, the sandbox refuses
    async with sandbox_http(sandbox) as http:
        h = await _auth(sandbox)
        for case in cases:
            if case["def"] != "request.applications.create":
                continue
            r = await http.post(graph_url(sandbox, "applications"), json=copy.deepcopy(case["instance"]), headers=h)
            assert (r.status_code == 201) == case["expectValid"], (case["label"], r.status_code, r.text[:200])


async def test_unreadable_json_is_400_not_500(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        r = await http.post(graph_url(sandbox, "applications"), content=b"{not json", headers=await _auth(sandbox) | {"Content-Type": "application/json"})
    assert r.status_code == 400
    assert isinstance(r, httpx.Response) and r.json()["error"]["code"] == "BadRequest"
