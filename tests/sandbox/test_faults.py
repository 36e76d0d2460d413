"""Faults on purpose: replication delay, throttling, 503s, latency, Dataverse publish bursts."""

from __future__ import annotations

import time

from sandbox import FaultSettings, Sandbox
from tests.fixtures.sandbox import sandbox_http

from .helpers import APP_BODY, env_url, graph_url, token, wait_until


async def test_replication_delay_hides_new_objects_for_a_while(sandbox: Sandbox) -> None:
    await sandbox.set_faults(FaultSettings(replication_delay_s=0.8))
    async with sandbox_http(sandbox) as http:
        h = {"Authorization": f"Bearer {await token(sandbox)}"}
        app = (await http.post(graph_url(sandbox, "applications"), json=APP_BODY, headers=h)).json()
        early_get = await http.get(graph_url(sandbox, f"applications/{app['id']}"), headers=h)
        early_pwd = await http.post(graph_url(sandbox, f"applications/{app['id']}/addPassword"), json={}, headers=h)
        early_sp = await http.post(graph_url(sandbox, "servicePrincipals"), json={"appId": app["appId"]}, headers=h)
        assert early_get.status_code == 404 and early_get.json()["error"]["code"] == "Request_ResourceNotFound"
        assert early_pwd.status_code == 404
        assert early_sp.status_code == 400
        assert early_sp.json()["error"]["details"][0]["code"] == "NoBackingApplicationObject"
        assert "does not reference a valid application object" in early_sp.json()["error"]["message"]

        async def visible() -> bool:
            return (await http.get(graph_url(sandbox, f"applications/{app['id']}"), headers=h)).status_code == 200

        await wait_until(visible, timeout=5)
        sandbox.graph.max_password_lifetime = None  # type: ignore[union-attr]
        cred = (await http.post(graph_url(sandbox, f"applications/{app['id']}/addPassword"), json={}, headers=h)).json()
        listed = (await http.get(graph_url(sandbox, f"applications/{app['id']}"), headers=h)).json()
        assert cred["keyId"] not in {p["keyId"] for p in listed["passwordCredentials"]}  # the new password is still replicating


async def test_throttling_and_unavailability(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        gh = {"Authorization": f"Bearer {await token(sandbox)}"}
        dh = {"Authorization": f"Bearer {await token(sandbox, env_url(sandbox))}"}
        await sandbox.set_faults(FaultSettings(replication_delay_s=0, throttle_rate=1.0, retry_after_s=3))
        g = await http.get(graph_url(sandbox, "applications"), headers=gh)
        d = await http.get(f"{env_url(sandbox)}/api/data/v9.2/bots", headers=dh)
        await sandbox.set_faults(FaultSettings(replication_delay_s=0, unavailable_rate=1.0))
        u = await http.get(graph_url(sandbox, "applications"), headers=gh)
        await sandbox.set_faults(FaultSettings(replication_delay_s=0, throttle_rate=0.5, seed=7))
        statuses = [(await http.get(graph_url(sandbox, "applications"), headers=gh)).status_code for _ in range(40)]
    assert g.status_code == 429 and g.headers["Retry-After"] == "3" and g.json()["error"]["code"] == "TooManyRequests"
    assert g.headers["x-ms-throttle-information"] == "WriteLimitExceeded"
    assert d.status_code == 429 and d.headers["Retry-After"] == "3" and d.json()["error"]["code"] == "0x80072322"
    assert u.status_code == 503
    assert 5 < statuses.count(429) < 35 and statuses.count(200) == 40 - statuses.count(429)


async def test_fixed_latency_per_call(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = {"Authorization": f"Bearer {await token(sandbox)}"}
        await sandbox.set_faults(FaultSettings(replication_delay_s=0, latency_ms=150))
        start = time.perf_counter()
        r = await http.get(graph_url(sandbox, "applications"), headers=h)
        elapsed = time.perf_counter() - start
    assert r.status_code == 200 and elapsed >= 0.15


async def test_dataverse_publish_bursts_give_401_or_400_wrapping_429(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        h = {"Authorization": f"Bearer {await token(sandbox, env_url(sandbox))}"}
        bot = (await http.get(f"{env_url(sandbox)}/api/data/v9.2/bots", headers=h)).json()["value"][0]
        await sandbox.set_faults(FaultSettings(replication_delay_s=0, dataverse_burst_rate=1.0, seed=1))
        seen = set()
        for _ in range(12):
            r = await http.post(f"{env_url(sandbox)}/api/data/v9.2/bots({bot['botid']})/Microsoft.Dynamics.CRM.PvaPublish", json={}, headers=h)
            seen.add(r.status_code)
            if r.status_code == 400:
                assert "TooManyRequests (429)" in r.json()["error"]["message"]
    assert seen == {400, 401}


async def test_faults_are_settable_over_http(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        r = await http.put(f"{sandbox.url}/_sandbox/faults", json={"throttle_rate": 0.25, "retry_after_s": 2})
        got = (await http.get(f"{sandbox.url}/_sandbox/faults")).json()
    assert r.status_code == 200 and got["throttle_rate"] == 0.25 and got["retry_after_s"] == 2
    assert sandbox.faults.settings.throttle_rate == 0.25
