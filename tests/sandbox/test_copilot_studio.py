"""The emulated Copilot Studio's federated path: "Microsoft Entra ID V2 with federated credentials", the issuer
and value it shows, Save checked against the app registration's federated credentials, what the page shows."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from sandbox import FaultSettings, Sandbox
from tests.fixtures.sandbox import sandbox_http, sandbox_options

from .helpers import APP_BODY, env_url, graph_url, token, wait_until

API = "/api/data/v9.2"
AUDIENCE = "api://AzureADTokenExchange"
SOON = (datetime.now(timezone.utc) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")


async def _agent(http: httpx.AsyncClient, sb: Sandbox, schema: str) -> dict[str, Any]:
    h = {"Authorization": f"Bearer {await token(sb, env_url(sb))}"}
    r = await http.get(f"{env_url(sb)}{API}/bots", params={"$filter": f"schemaname eq '{schema}'"}, headers=h)
    return dict(r.json()["value"][0])


async def _app(http: httpx.AsyncClient, sb: Sandbox) -> tuple[dict[str, Any], dict[str, str]]:
    h = {"Authorization": f"Bearer {await token(sb)}"}
    return (await http.post(graph_url(sb, "applications"), json=APP_BODY, headers=h)).json(), h


async def test_federated_authentication_shows_a_stable_issuer_and_value(sandbox: Sandbox) -> None:
    tenant = sandbox.env["PROVISIONING_TENANT_ID"]
    async with sandbox_http(sandbox) as http:
        app, _h = await _app(http, sandbox)
        bot = await _agent(http, sandbox, "cr6a1_contosoSupport")
        other = await _agent(http, sandbox, "cr6a1_contosoHrHelpdesk")
        url = f"{sandbox.url}/_sandbox/bots/{bot['botid']}/federated-authentication"
        unknown = await http.post(url, json={"client_id": "00000000-0000-0000-0000-000000000000", "tenant_id": tenant})
        wrong_tenant = await http.post(url, json={"client_id": app["appId"], "tenant_id": "11111111-2222-3333-4444-555555555555"})
        first = await http.post(url, json={"client_id": app["appId"], "tenant_id": tenant})
        again = await http.post(url, json={"client_id": app["appId"], "tenant_id": tenant.upper()})
        other_bot = await http.post(f"{sandbox.url}/_sandbox/bots/{other['botid']}/federated-authentication",
                                    json={"client_id": app["appId"], "tenant_id": tenant})
    assert unknown.status_code == 400 and "No app registration has the client ID" in unknown.json()["error"]
    assert wrong_tenant.status_code == 400 and "tenant ID" in wrong_tenant.json()["error"]
    assert first.status_code == 200
    pair = first.json()
    issuer, subject = pair["issuer"], pair["subject"]
    assert urlsplit(issuer).scheme == "https" and urlsplit(issuer).netloc == urlsplit(sandbox.env["AZURE_AUTHORITY_HOST"]).netloc
    assert subject and " " not in subject and len(subject) <= 600 and len(issuer) <= 600
    assert bot["botid"] not in subject and tenant not in subject  # opaque: copy it, do not build it
    assert pair["audience"] == AUDIENCE
    assert (again.json()["issuer"], again.json()["subject"]) == (issuer, subject)
    assert other_bot.json()["subject"] != subject


async def test_the_pair_survives_a_restart(tmp_path: Path) -> None:
    pairs = []
    for _ in range(2):
        sb = Sandbox(sandbox_options(tmp_path))
        await sb.start()
        try:
            async with sandbox_http(sb) as http:
                app, _h = await _app(http, sb)
                bot = await _agent(http, sb, "cr6a1_contosoSupport")
                r = await http.post(f"{sb.url}/_sandbox/bots/{bot['botid']}/federated-authentication",
                                    json={"client_id": app["appId"], "tenant_id": sb.env["PROVISIONING_TENANT_ID"]})
                pairs.append((r.json()["issuer"], r.json()["subject"]))
        finally:
            await sb.stop()
    assert pairs[0] == pairs[1]


async def test_save_needs_the_matching_federated_credential_then_sets_the_agent(sandbox: Sandbox) -> None:
    tenant = sandbox.env["PROVISIONING_TENANT_ID"]
    async with sandbox_http(sandbox) as http:
        app, gh = await _app(http, sandbox)
        bot = await _agent(http, sandbox, "cr6a1_contosoSupport")
        base = f"{sandbox.url}/_sandbox/bots/{bot['botid']}"
        too_early = await http.post(f"{base}/federated-authentication/save")
        pair = (await http.post(f"{base}/federated-authentication", json={"client_id": app["appId"], "tenant_id": tenant})).json()
        nothing = await http.post(f"{base}/federated-authentication/save")
        fics = graph_url(sandbox, f"applications/{app['id']}/federatedIdentityCredentials")
        wrong_audience = {"name": "wrong-audience", "issuer": pair["issuer"], "subject": pair["subject"], "audiences": ["api://other"]}
        assert (await http.post(fics, json=wrong_audience, headers=gh)).status_code == 201
        audience_mismatch = await http.post(f"{base}/federated-authentication/save")
        assert (await http.delete(f"{fics}(name='wrong-audience')", headers=gh)).status_code == 204
        await sandbox.set_faults(FaultSettings(replication_delay_s=0.6))

        async def app_visible() -> bool:
            return (await http.get(fics, headers=gh)).status_code == 200

        await wait_until(app_visible, timeout=5)  # the application itself is younger than the new delay
        right = {"name": "copilot-studio", "issuer": pair["issuer"], "subject": pair["subject"], "audiences": [AUDIENCE]}
        assert (await http.post(fics, json=right, headers=gh)).status_code == 201
        replicating = await http.post(f"{base}/federated-authentication/save")

        async def saved() -> httpx.Response | None:
            r = await http.post(f"{base}/federated-authentication/save")
            return r if r.status_code == 200 else None

        ok = await wait_until(saved, timeout=5, interval=0.1)
        await sandbox.set_faults(FaultSettings(replication_delay_s=0))
        row = await _agent(http, sandbox, "cr6a1_contosoSupport")
        view = (await http.get(f"{base}/authentication")).json()
    assert too_early.status_code == 400 and "client ID and tenant ID first" in too_early.json()["error"]
    for refused in (nothing, audience_mismatch, replicating):
        assert refused.status_code == 400
        message = refused.json()["error"]
        assert pair["issuer"] in message and pair["subject"] in message and AUDIENCE in message
    assert ok.json()["credential_kind"] == "federated"
    assert row["authenticationmode"] == 3 and row["authenticationtrigger"] == 1
    assert json.loads(row["authenticationconfiguration"])["connectionName"]
    assert json.loads(row["synchronizationstatus"])["lastPublishedDetails"]["authenticationMode"] == "Integrated"  # not published yet
    assert view["credential_kind"] == "federated" and view["client_id"] == app["appId"] and view["tenant_id"] == tenant
    assert (view["issuer"], view["subject"]) == (pair["issuer"], pair["subject"])
    assert view["mode"] == 3 and view["service_provider"] == "Microsoft Entra ID V2 with federated credentials"
    assert view["published"] is False


async def test_the_authentication_page_after_secret_setup_and_publish(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        app, gh = await _app(http, sandbox)
        cred = (await http.post(graph_url(sandbox, f"applications/{app['id']}/addPassword"),
                                json={"passwordCredential": {"displayName": "t", "endDateTime": SOON}}, headers=gh)).json()
        bot = await _agent(http, sandbox, "cr6a1_contosoSupport")
        base = f"{sandbox.url}/_sandbox/bots/{bot['botid']}"
        before = (await http.get(f"{base}/authentication")).json()
        assert (await http.post(f"{base}/manual-authentication", json={"client_id": app["appId"], "client_secret": cred["secretText"]})).status_code == 200
        set_up = (await http.get(f"{base}/authentication")).json()
        dh = {"Authorization": f"Bearer {await token(sandbox, env_url(sandbox))}"}
        assert (await http.post(f"{env_url(sandbox)}{API}/bots({bot['botid']})/Microsoft.Dynamics.CRM.PvaPublish", json={}, headers=dh)).status_code == 200

        async def published() -> dict[str, Any] | None:
            view = (await http.get(f"{base}/authentication")).json()
            return view if view["published"] else None

        after = await wait_until(published, timeout=5)
        missing = await http.get(f"{sandbox.url}/_sandbox/bots/00000000-0000-0000-0000-000000000000/authentication")
    assert before["mode_name"] == "Integrated" and before["credential_kind"] is None and before["published"] is True
    assert set_up["credential_kind"] == "secret" and set_up["client_id"] == app["appId"] and set_up["issuer"] is None
    assert set_up["service_provider"] == "Microsoft Entra ID V2 with client secrets" and set_up["published"] is False
    assert after["published_mode_name"] == "CustomAzureActiveDirectory" and after["publishedon"]
    assert cred["secretText"] not in json.dumps([before, set_up, after])
    assert missing.status_code == 404
