"""The sandbox's clock (`GET|PUT /_sandbox/clock`): the Date header of every response, password validity,
secured-access propagation and publish completion follow the shifted clock; tokens keep working."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from pathlib import Path

import httpx
import pytest

from sandbox import FaultSettings, Sandbox
from tests.fixtures.sandbox import sandbox_http, sandbox_options

from .helpers import APP_BODY, env_url, graph_url, token

API = "/api/data/v9.2"
DAY = 86400
IMF_FIXDATE = re.compile(r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT$")


@pytest.fixture
async def slow(tmp_path: Path) -> AsyncIterator[Sandbox]:
    """Microsoft's real durations: secured access takes 2 hours, a publish an hour here."""
    sb = Sandbox(sandbox_options(tmp_path / "slow", propagation_delay=timedelta(hours=2), publish_duration=timedelta(hours=1)))
    await sb.start()
    try:
        yield sb
    finally:
        await sb.stop()


def _shifted_by(response: httpx.Response, seconds: float) -> bool:
    date = response.headers["Date"]
    assert IMF_FIXDATE.match(date), date
    expected = datetime.now(timezone.utc) + timedelta(seconds=seconds)
    return abs((parsedate_to_datetime(date) - expected).total_seconds()) < 60


async def _shift(http: httpx.AsyncClient, sb: Sandbox, seconds: float) -> None:
    r = await http.put(f"{sb.url}/_sandbox/clock", json={"offset_s": seconds})
    assert r.status_code == 200 and r.json()["offset_s"] == seconds, r.text


async def test_every_response_carries_a_date_by_the_shifted_clock_and_tokens_keep_working(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        gh = {"Authorization": f"Bearer {await token(sandbox)}"}  # issued before the shift
        dh = {"Authorization": f"Bearer {await token(sandbox, env_url(sandbox))}"}
        before = await http.get(graph_url(sandbox, "applications"), headers=gh)
        await _shift(http, sandbox, 3 * DAY)
        graph_ok = await http.get(graph_url(sandbox, "applications"), headers=gh)
        graph_error = await http.get(graph_url(sandbox, "applications/00000000-0000-0000-0000-000000000000"), headers=gh)
        created = (await http.post(graph_url(sandbox, "applications"), json=APP_BODY, headers=gh)).json()
        dataverse_ok = await http.get(f"{env_url(sandbox)}{API}/WhoAmI", headers=dh)
        dataverse_401 = await http.get(f"{env_url(sandbox)}{API}/WhoAmI")
        operator = await http.get(f"{sandbox.url}/_sandbox/clock")
        operator_404 = await http.get(f"{sandbox.url}/_sandbox/bots/00000000-0000-0000-0000-000000000000/secured-access")
        fresh = await http.get(graph_url(sandbox, "applications"), headers={"Authorization": f"Bearer {await token(sandbox)}"})
    assert _shifted_by(before, 0)
    for r in (graph_ok, graph_error, dataverse_ok, dataverse_401, operator, operator_404, fresh):
        assert _shifted_by(r, 3 * DAY), (r.request.url, r.headers["Date"])
    assert graph_ok.status_code == dataverse_ok.status_code == fresh.status_code == 200  # tokens: checked on real time
    inner = datetime.fromisoformat(graph_error.json()["error"]["innerError"]["date"]).replace(tzinfo=timezone.utc)
    assert abs((inner - datetime.now(timezone.utc) - timedelta(days=3)).total_seconds()) < 60
    made = datetime.fromisoformat(created["createdDateTime"].replace("Z", "+00:00"))
    assert abs((made - datetime.now(timezone.utc) - timedelta(days=3)).total_seconds()) < 60
    assert operator.json()["offset_s"] == 3 * DAY


async def test_a_secret_expires_by_the_shifted_clock(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        gh = {"Authorization": f"Bearer {await token(sandbox)}"}
        app = (await http.post(graph_url(sandbox, "applications"), json=APP_BODY, headers=gh)).json()
        end = (datetime.now(timezone.utc) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
        cred = (await http.post(graph_url(sandbox, f"applications/{app['id']}/addPassword"),
                                json={"passwordCredential": {"displayName": "t", "endDateTime": end}}, headers=gh)).json()
        dh = {"Authorization": f"Bearer {await token(sandbox, env_url(sandbox))}"}
        bot = (await http.get(f"{env_url(sandbox)}{API}/bots", params={"$filter": "schemaname eq 'cr6a1_contosoSupport'"}, headers=dh)).json()["value"][0]
        url = f"{sandbox.url}/_sandbox/bots/{bot['botid']}/manual-authentication"
        body = {"client_id": app["appId"], "client_secret": cred["secretText"], "scopes": "profile openid"}
        valid_now = await http.post(url, json=body)
        await _shift(http, sandbox, 31 * DAY)
        expired = await http.post(url, json=body)
    assert valid_now.status_code == 200
    assert expired.status_code == 400 and "unexpired" in expired.json()["error"]


async def test_secured_access_and_publish_complete_when_the_clock_moves_past_them(slow: Sandbox) -> None:
    async with sandbox_http(slow) as http:
        dh = {"Authorization": f"Bearer {await token(slow, env_url(slow))}"}
        bot = (await http.get(f"{env_url(slow)}{API}/bots", params={"$filter": "schemaname eq 'cr6a1_contosoSupport'"}, headers=dh)).json()["value"][0]
        secured = f"{slow.url}/_sandbox/bots/{bot['botid']}/secured-access"
        on = (await http.post(secured, json={"enabled": True})).json()
        row_url = f"{env_url(slow)}{API}/bots({bot['botid']})"
        assert (await http.post(f"{row_url}/Microsoft.Dynamics.CRM.PvaPublish", json={}, headers=dh)).status_code == 200
        await _shift(http, slow, 3600 - 120)
        not_yet = (await http.get(secured)).json()
        running = await http.post(f"{row_url}/Microsoft.Dynamics.CRM.PvaPublish", json={}, headers=dh)
        await _shift(http, slow, 2 * 3600 + 5)
        in_effect = (await http.get(secured)).json()
        row = (await http.get(row_url, params={"$select": "publishedon"}, headers=dh)).json()
    assert on["in_effect"] is False and not_yet["in_effect"] is False
    assert running.status_code == 409  # the hour-long publish is still running
    assert in_effect["in_effect"] is True
    published = datetime.fromisoformat(row["publishedon"].replace("Z", "+00:00"))
    assert published > datetime.now(timezone.utc) + timedelta(minutes=50)  # completed at the shifted hour, not real time


async def test_the_offset_is_validated_and_survives_a_restart(tmp_path: Path) -> None:
    sb = Sandbox(sandbox_options(tmp_path))
    await sb.start()
    try:
        async with sandbox_http(sb) as http:
            bad = [await http.put(f"{sb.url}/_sandbox/clock", json=b) for b in ({"offset_s": "a day"}, {"offset_s": True}, {})]
            await sb.set_faults(FaultSettings(replication_delay_s=3))
            gh = {"Authorization": f"Bearer {await token(sb)}"}
            app = (await http.post(graph_url(sb, "applications"), json=APP_BODY, headers=gh)).json()
            await _shift(http, sb, -DAY)
            older = await http.get(graph_url(sb, f"applications/{app['id']}"), headers=gh)
    finally:
        await sb.stop()
    again = Sandbox(sandbox_options(tmp_path))
    await again.start()
    try:
        async with sandbox_http(again) as http:
            clock = await http.get(f"{again.url}/_sandbox/clock")
            await _shift(http, again, 0)
            undone = await http.get(f"{again.url}/_sandbox/clock")
    finally:
        await again.stop()
    assert all(r.status_code == 400 for r in bad)
    assert older.status_code == 200  # made before the clock went back: still there
    assert clock.json()["offset_s"] == -DAY and _shifted_by(clock, -DAY)
    assert undone.json()["offset_s"] == 0 and _shifted_by(undone, 0)
