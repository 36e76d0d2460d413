"""Graph v1.0 federated identity credentials over real HTTPS: create, read, upsert, update, delete; Graph's
validation, uniqueness and limit errors; owner and role rules; replication delay; the operator state."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sandbox import FaultSettings, Sandbox, schema
from tests.fixtures.sandbox import sandbox_http

from .helpers import APP_BODY, graph_url, new_client, token, wait_until

AUDIENCE = "api://AzureADTokenExchange"
ISSUER = "https://login.microsoftonline.com/3d1e2be9-a10a-4a0c-8380-7ce190f98ed9/v2.0"


def fic(name: str = "copilot-studio", subject: str = "/eid1/c/pub/t/abc/a/def/ghi", **extra: Any) -> dict[str, Any]:
    return {"name": name, "issuer": ISSUER, "subject": subject, "audiences": [AUDIENCE]} | extra


async def _auth(sb: Sandbox, **kw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {await token(sb, **kw)}"}


async def _app(http: httpx.AsyncClient, sb: Sandbox, headers: dict[str, str]) -> dict[str, Any]:
    r = await http.post(graph_url(sb, "applications"), json=APP_BODY, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _graph_error(r: httpx.Response, status: int, code: str, text: str = "") -> None:
    assert r.status_code == status, r.text
    assert not schema.errors("microsoft.graph.ODataErrors.ODataError", r.json())
    assert r.json()["error"]["code"] == code, r.text
    assert text in r.json()["error"]["message"], r.text
    assert r.json()["error"]["innerError"]["request-id"] == r.headers["request-id"]


async def test_create_then_read_by_id_name_and_alternate_keys(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = await _auth(sandbox)
        app = await _app(http, sandbox, h)
        base = f"applications/{app['id']}/federatedIdentityCredentials"
        created = await http.post(graph_url(sandbox, base + "/"), json=fic(description="Copilot Studio agent"), headers=h)
        by_app_id = await http.post(graph_url(sandbox, f"applications(appId='{app['appId']}')/federatedIdentityCredentials"),
                                    json=fic("second", subject="other-subject"), headers=h)
        listed = (await http.get(graph_url(sandbox, base), headers=h)).json()
        cred = created.json()
        by_id = (await http.get(graph_url(sandbox, f"{base}/{cred['id']}"), headers=h)).json()
        by_name_segment = (await http.get(graph_url(sandbox, f"{base}/copilot-studio"), headers=h)).json()
        by_name_key = (await http.get(graph_url(sandbox, f"{base}(name='copilot-studio')"), headers=h)).json()
        filtered = (await http.get(graph_url(sandbox, base), params={"$filter": "subject eq 'other-subject'"}, headers=h)).json()
        selected = (await http.get(graph_url(sandbox, base), params={"$select": "name,subject"}, headers=h)).json()
        bad_select = await http.get(graph_url(sandbox, base), params={"$select": "colour"}, headers=h)
        bad_filter = await http.get(graph_url(sandbox, base), params={"$filter": "description eq 'x'"}, headers=h)
        app_read = (await http.get(graph_url(sandbox, f"applications/{app['id']}"), headers=h)).json()
    assert created.status_code == 201 and by_app_id.status_code == 201
    assert set(cred) == {"@odata.context", "id", "name", "issuer", "subject", "description", "audiences"}
    assert cred["@odata.context"].endswith(f"applications('{app['id']}')/federatedIdentityCredentials/$entity")
    assert cred["audiences"] == [AUDIENCE] and cred["description"] == "Copilot Studio agent"
    assert {c["name"] for c in listed["value"]} == {"copilot-studio", "second"}
    assert by_id["id"] == by_name_segment["id"] == by_name_key["id"] == cred["id"]
    assert [c["name"] for c in filtered["value"]] == ["second"]
    assert all(set(c) == {"name", "subject"} for c in selected["value"])
    _graph_error(bad_select, 400, "Request_UnsupportedQuery")
    _graph_error(bad_filter, 400, "Request_UnsupportedQuery")
    assert "federatedIdentityCredentials" not in app_read  # a navigation property, not part of the application


async def test_upsert_update_and_delete(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = await _auth(sandbox)
        app = await _app(http, sandbox, h)
        base = f"applications/{app['id']}/federatedIdentityCredentials"
        by_name = f"{base}(name='agent-one')"
        body = {"issuer": ISSUER, "subject": "subject-1", "audiences": [AUDIENCE]}
        without_prefer = await http.patch(graph_url(sandbox, by_name), json=body, headers=h)
        created = await http.patch(graph_url(sandbox, by_name), json=body, headers=h | {"Prefer": "create-if-missing"})
        updated = await http.patch(graph_url(sandbox, by_name), json=body | {"subject": "subject-2"}, headers=h | {"Prefer": "create-if-missing"})
        plain_update = await http.patch(graph_url(sandbox, by_name), json={"description": "by name"}, headers=h)
        by_id = await http.patch(graph_url(sandbox, f"{base}/{created.json()['id']}"), json={"name": "agent-one", "description": "by id"}, headers=h)
        rename = await http.patch(graph_url(sandbox, f"{base}/{created.json()['id']}"), json={"name": "agent-two"}, headers=h)
        after = (await http.get(graph_url(sandbox, by_name), headers=h)).json()
        other = (await http.post(graph_url(sandbox, base), json=fic("agent-three", subject="s3"), headers=h)).json()
        delete_by_id = await http.delete(graph_url(sandbox, f"{base}/{created.json()['id']}"), headers=h)
        delete_by_name = await http.delete(graph_url(sandbox, f"{base}(name='agent-three')"), headers=h)
        again = await http.delete(graph_url(sandbox, f"{base}/{other['id']}"), headers=h)
        left = (await http.get(graph_url(sandbox, base), headers=h)).json()
    _graph_error(without_prefer, 404, "Request_ResourceNotFound", "agent-one")
    assert created.status_code == 201 and created.json()["name"] == "agent-one"
    assert updated.status_code == plain_update.status_code == by_id.status_code == 204 and updated.content == b""
    _graph_error(rename, 400, "InvalidFederatedIdentityCredentialValue", "paramName: FederatedIdentityCredential.Name")
    assert after["subject"] == "subject-2" and after["description"] == "by id" and after["id"] == created.json()["id"]
    assert delete_by_id.status_code == delete_by_name.status_code == 204
    _graph_error(again, 404, "Request_ResourceNotFound", other["id"])
    assert left["value"] == []


@pytest.mark.parametrize(
    ("body", "status", "code", "text"),
    [
        (fic(audiences=[AUDIENCE, "api://other"]), 400, "InvalidFederatedIdentityCredentialValue", "exactly 1 audience"),
        (fic(audiences=[]), 400, "Request_BadRequest", "A value is required for property 'audiences'"),
        ({k: v for k, v in fic().items() if k != "name"}, 400, "Request_BadRequest", "A value is required for property 'name' of resource 'FederatedIdentityCredential'"),
        ({k: v for k, v in fic().items() if k != "subject"}, 400, "Request_BadRequest", "A value is required for property 'subject'"),
        ({k: v for k, v in fic().items() if k != "issuer"}, 400, "Request_BadRequest", "A value is required for property 'issuer'"),
        (fic("n" * 121), 400, "InvalidFederatedIdentityCredentialValue", "maximum length of 120"),
        (fic("branch/main"), 400, "InvalidFederatedIdentityCredentialValue", "not a valid URI last segment"),
        (fic("has space"), 400, "InvalidFederatedIdentityCredentialValue", "not a valid URI last segment"),
        (fic(issuer="not a url"), 400, "InvalidFederatedIdentityCredentialValue", "paramName: FederatedIdentityCredential.Issuer"),
        (fic(issuer="https://example.com/" + "i" * 600), 400, "InvalidFederatedIdentityCredentialValue", "maximum length of 600"),
        (fic(subject="s" * 601), 400, "InvalidFederatedIdentityCredentialValue", "paramName: FederatedIdentityCredential.Subject"),
        (fic(description="d" * 601), 400, "InvalidFederatedIdentityCredentialValue", "Description"),
        (fic(claimsMatchingExpression={"value": "x"}), 400, "Request_BadRequest", "Invalid property 'claimsMatchingExpression'."),
        (fic(audiences=AUDIENCE), 400, "Request_BadRequest", "Invalid value specified for property 'audiences'"),
    ],
    ids=["two-audiences", "no-audience", "no-name", "no-subject", "no-issuer", "long-name", "slash-name", "space-name",
         "issuer-not-url", "long-issuer", "long-subject", "long-description", "unknown-property", "audiences-not-a-list"],
)
async def test_invalid_credentials_get_graphs_errors(sandbox: Sandbox, body: dict[str, Any], status: int, code: str, text: str) -> None:
    async with sandbox_http(sandbox) as http:
        h = await _auth(sandbox)
        app = await _app(http, sandbox, h)
        r = await http.post(graph_url(sandbox, f"applications/{app['id']}/federatedIdentityCredentials"), json=body, headers=h)
        left = (await http.get(graph_url(sandbox, f"applications/{app['id']}/federatedIdentityCredentials"), headers=h)).json()
    _graph_error(r, status, code, text)
    assert left["value"] == []


async def test_names_and_issuer_subject_pairs_are_unique_and_at_most_20(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = await _auth(sandbox)
        app = await _app(http, sandbox, h)
        url = graph_url(sandbox, f"applications/{app['id']}/federatedIdentityCredentials")
        assert (await http.post(url, json=fic("main", subject="s-0"), headers=h)).status_code == 201
        same_name = await http.post(url, json=fic("MAIN", subject="s-other"), headers=h)
        same_pair = await http.post(url, json=fic("other", subject="s-0"), headers=h)
        for i in range(1, 20):
            assert (await http.post(url, json=fic(f"fic-{i}", subject=f"s-{i}"), headers=h)).status_code == 201
        twenty_first = await http.post(url, json=fic("fic-20", subject="s-20"), headers=h)
        count = len((await http.get(url, headers=h)).json()["value"])
    _graph_error(same_name, 409, "Request_MultipleObjectsWithSameKeyValue", "FederatedIdentityCredential with name MAIN already exists.")
    _graph_error(same_pair, 400, "InvalidFederatedIdentityCredentialValue", "The combination of issuer and subject must be unique")
    _graph_error(twenty_first, 400, "Request_BadRequest", "limit of 20")
    assert count == 20


async def test_owned_by_callers_and_roles(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        mine = await _app(http, sandbox, await _auth(sandbox))
        url = graph_url(sandbox, f"applications/{mine['id']}/federatedIdentityCredentials")
        assert (await http.post(url, json=fic(), headers=await _auth(sandbox))).status_code == 201
        owned_by, owned_by_secret = await new_client(http, sandbox, ["Application.ReadWrite.OwnedBy"])
        other = await _auth(sandbox, client_id=owned_by, secret=owned_by_secret)
        reader_id, reader_secret = await new_client(http, sandbox, ["Application.Read.All"])
        reader = await _auth(sandbox, client_id=reader_id, secret=reader_secret)
        admin_id, admin_secret = await new_client(http, sandbox, ["Application.ReadWrite.All"])
        admin = await _auth(sandbox, client_id=admin_id, secret=admin_secret)
        other_list = await http.get(url, headers=other)
        other_post = await http.post(url, json=fic("x", subject="x"), headers=other)
        other_delete = await http.delete(f"{url}(name='copilot-studio')", headers=other)
        reader_list = await http.get(url, headers=reader)
        reader_post = await http.post(url, json=fic("y", subject="y"), headers=reader)
        admin_post = await http.post(url, json=fic("z", subject="z"), headers=admin)
    for r in (other_list, other_post, other_delete, reader_post):
        _graph_error(r, 403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
    assert reader_list.status_code == 200 and [c["name"] for c in reader_list.json()["value"]] == ["copilot-studio"]
    assert admin_post.status_code == 201


async def test_a_new_credential_is_missing_from_reads_while_it_replicates(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = await _auth(sandbox)
        await sandbox.set_faults(FaultSettings(replication_delay_s=0.8))
        app = await _app(http, sandbox, h)
        url = graph_url(sandbox, f"applications/{app['id']}/federatedIdentityCredentials")

        async def app_visible() -> bool:
            return (await http.get(url, headers=h)).status_code == 200

        await wait_until(app_visible, timeout=5)  # the application itself replicates first
        created = (await http.post(url, json=fic(), headers=h)).json()
        early_list = (await http.get(url, headers=h)).json()
        early_get = await http.get(f"{url}/{created['id']}", headers=h)
        duplicate = await http.post(url, json=fic(), headers=h)  # the directory already has it

        async def visible() -> bool:
            return (await http.get(f"{url}/{created['id']}", headers=h)).status_code == 200

        await wait_until(visible, timeout=5)
        late_list = (await http.get(url, headers=h)).json()
    assert early_list["value"] == []
    _graph_error(early_get, 404, "Request_ResourceNotFound")
    assert duplicate.status_code == 409
    assert [c["id"] for c in late_list["value"]] == [created["id"]]


async def test_federated_credentials_appear_in_the_operator_state(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = await _auth(sandbox)
        app = await _app(http, sandbox, h)
        created = (await http.post(graph_url(sandbox, f"applications/{app['id']}/federatedIdentityCredentials"), json=fic(), headers=h)).json()
        state = (await http.get(f"{sandbox.url}/_sandbox/state")).json()
    [entry] = [a for a in state["applications"] if a["id"] == app["id"]]
    assert entry["federatedIdentityCredentials"] == [{k: v for k, v in created.items() if not k.startswith("@")}]
