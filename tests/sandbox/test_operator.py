"""The operator endpoint: the portal steps that have no API, done the way the portal would do them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from sandbox import Sandbox
from tests.fixtures.sandbox import sandbox_http

from .helpers import APP_BODY, env_url, graph_url, token, wait_until

API = "/api/data/v9.2"
SOON = (datetime.now(timezone.utc) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _agent(http, sb: Sandbox, schema: str) -> dict:  # type: ignore[no-untyped-def,type-arg]
    h = {"Authorization": f"Bearer {await token(sb, env_url(sb))}"}
    return (await http.get(f"{env_url(sb)}{API}/bots", params={"$filter": f"schemaname eq '{schema}'"}, headers=h)).json()["value"][0]


async def test_manual_authentication_checks_the_secret_then_sets_mode_3(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        gh = {"Authorization": f"Bearer {await token(sandbox)}"}
        app = (await http.post(graph_url(sandbox, "applications"), json=APP_BODY, headers=gh)).json()
        cred = (await http.post(graph_url(sandbox, f"applications/{app['id']}/addPassword"), json={"passwordCredential": {"displayName": "t", "endDateTime": SOON}}, headers=gh)).json()
        bot = await _agent(http, sandbox, "cr6a1_contosoSupport")
        url = f"{sandbox.url}/_sandbox/bots/{bot['botid']}/manual-authentication"
        wrong = await http.post(url, json={"client_id": app["appId"], "client_secret": "nope", "scopes": "profile openid"})
        unknown = await http.post(url, json={"client_id": "00000000-0000-0000-0000-000000000000", "client_secret": cred["secretText"]})
        ok = await http.post(url, json={"client_id": app["appId"], "client_secret": cred["secretText"], "scopes": "profile openid"})
        after = await _agent(http, sandbox, "cr6a1_contosoSupport")
    assert wrong.status_code == 400 and "not a valid" in wrong.json()["error"]
    assert unknown.status_code == 400 and "client ID" in unknown.json()["error"]
    assert ok.status_code == 200
    assert after["authenticationmode"] == 3 and after["authenticationtrigger"] == 1
    assert json.loads(after["authenticationconfiguration"])["connectionName"]
    # not published yet: the published auth mode is still the old one
    assert json.loads(after["synchronizationstatus"])["lastPublishedDetails"]["authenticationMode"] == "Integrated"


async def test_secured_access_takes_effect_after_the_propagation_delay(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        bot = await _agent(http, sandbox, "cr6a1_contosoSupport")
        url = f"{sandbox.url}/_sandbox/bots/{bot['botid']}/secured-access"
        assert (await http.get(url)).json()["enabled"] is False
        on = (await http.post(url, json={"enabled": True})).json()
        assert on["enabled"] is True and on["in_effect"] is False and on["effective_at"]

        async def in_effect() -> bool:
            return bool((await http.get(url)).json()["in_effect"])

        await wait_until(in_effect, timeout=6, interval=0.2)


async def test_customer_service_connect_refuses_long_names_and_is_idempotent(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        long = await _agent(http, sandbox, "cr6a1_contosoReturnsWarranty")
        refused = await http.post(f"{sandbox.url}/_sandbox/bots/{long['botid']}/customer-service-connection")
        bot = await _agent(http, sandbox, "cr6a1_contosoSupport")
        first = await http.post(f"{sandbox.url}/_sandbox/bots/{bot['botid']}/customer-service-connection")
        second = await http.post(f"{sandbox.url}/_sandbox/bots/{bot['botid']}/customer-service-connection")
        state = (await http.get(f"{sandbox.url}/_sandbox/state")).json()
    assert refused.status_code == 400 and "30 characters" in refused.json()["error"]
    assert first.status_code == second.status_code == 200
    users = [u for u in state["environments"]["contoso"]["bot_application_users"] if u["msdyn_botapplicationid"] == first.json()["msdyn_botapplicationid"]]
    assert len(users) == 1 and users[0]["msdyn_agentType"] == 192350001


async def test_unknown_bot_and_bad_bodies(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        missing = await http.post(f"{sandbox.url}/_sandbox/bots/00000000-0000-0000-0000-000000000000/secured-access", json={})
        bad_faults = await http.put(f"{sandbox.url}/_sandbox/faults", json={"throttle_rate": 2})
        unknown_fault = await http.put(f"{sandbox.url}/_sandbox/faults", json={"chaos": 1})
        not_json = await http.post(f"{sandbox.url}/_sandbox/clients", content=b"{")
        bad_role = await http.post(f"{sandbox.url}/_sandbox/clients", json={"roles": ["Everything"]})
    assert missing.status_code == 404
    assert bad_faults.status_code == unknown_fault.status_code == not_json.status_code == bad_role.status_code == 400
