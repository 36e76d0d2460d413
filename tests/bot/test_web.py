"""The HTTP front door: 4xx never 5xx for bad input, the invoke fix, health and readiness, config refusals."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from botbuilder.core import ActivityHandler, TurnContext
from botbuilder.schema import InvokeResponse
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from msrest.universal_http.requests import ClientRetryPolicy

from bot.adapter import create_adapter
from bot.config import BotSettings
from bot.errors import ConfigError
from bot.web import create_app
from tests.fixtures.connector import Connector
from tests.fixtures.teams import RILEY, execute, message, personal, task_fetch

CARD = {"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "answered"}]}


class EchoInvokes(ActivityHandler):  # type: ignore[misc]
    """A tiny handler for the front-door tests: answers invokes with a body, replies to messages slowly."""

    def __init__(self) -> None:
        self.turns = 0

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        await asyncio.sleep(float((turn_context.activity.text or "0").split()[-1]) if (turn_context.activity.text or "").startswith("slow") else 0)
        self.turns += 1
        await turn_context.send_activity("ok")

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        if turn_context.activity.name == "adaptiveCard/action":
            return InvokeResponse(status=200, body={"statusCode": 200, "type": "application/vnd.microsoft.card.adaptive", "value": CARD})
        return InvokeResponse(status=200, body={"task": {"type": "continue", "value": {"title": "t", "card": {"contentType": "application/vnd.microsoft.card.adaptive", "content": CARD}}}})


async def serve(handler: ActivityHandler, ready: dict[str, Any] | None = None, **env: str) -> tuple[web.AppRunner, str]:
    settings = BotSettings.from_env({"HOST": "127.0.0.1", **env}, dotenv=None)
    app = create_app(settings=settings, adapter=create_adapter(settings), bot=handler, readiness=ready or {})
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_invokes_answer_200_with_the_handlers_body(connector: Connector) -> None:
    runner, url = await serve(EchoInvokes())
    chat = personal(RILEY)
    try:
        async with aiohttp.ClientSession() as http:
            for body in (execute(chat, RILEY, connector.url, "x", "secret.reveal", {"a": 1}), task_fetch(chat, RILEY, connector.url, {"a": 1}),
                         dict(task_fetch(chat, RILEY, connector.url, {"a": 1}), name="task/submit")):
                async with http.post(f"{url}/api/messages", json=body) as r:
                    assert r.status == 200, await r.text()  # 500 without the double-serialization fix
                    answer = await r.json()
                assert CARD in (answer.get("value"), answer.get("task", {}).get("value", {}).get("card", {}).get("content"))
    finally:
        await runner.cleanup()


BAD = [
    (b"{not json", "application/json", 400),
    (b"[1, 2]", "application/json", 400),
    (b'{"text": "no type"}', "application/json", 400),
    (json.dumps({"type": "message", "channelId": "msteams", "conversation": {"id": "c"}}).encode(), "application/json", 400),
    (json.dumps({"type": "message", "channelId": "msteams", "serviceUrl": "https://evil.example.com/", "conversation": {"id": "c"}}).encode(), "application/json", 400),
    (json.dumps({"type": "message", "channelId": "msteams", "serviceUrl": "http://127.0.0.1:9/", "conversation": {"id": 5}}).encode(), "application/json", 400),
    (b"{}", "text/plain", 415),
    (b"{" + b'"a": "' + b"x" * 300_000 + b'"}', "application/json", 413),
]


@pytest.mark.parametrize(("body", "ctype", "status"), BAD, ids=["bad-json", "array", "no-type", "no-serviceUrl", "ssrf", "bad-conversation", "media-type", "too-large"])
async def test_bad_requests_get_4xx_and_change_nothing(body: bytes, ctype: str, status: int) -> None:
    handler = EchoInvokes()
    runner, url = await serve(handler)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{url}/api/messages", data=body, headers={"Content-Type": ctype}) as r:
                assert r.status == status
                assert "error" in await r.json()
    finally:
        await runner.cleanup()
    assert handler.turns == 0


@pytest.fixture(scope="module")
def live_bot() -> Any:
    """One bot and one fake connector on a background event loop, shared by every fuzz example."""
    import threading

    import requests

    loop = asyncio.new_event_loop()
    started: dict[str, Any] = {}

    async def boot() -> None:
        connector_app = web.Application()
        async def answer(_request: web.Request) -> web.Response:
            return web.json_response({"id": "1"})

        connector_app.router.add_route("*", "/{tail:.*}", answer)
        crunner = web.AppRunner(connector_app, access_log=None)
        await crunner.setup()
        await web.TCPSite(crunner, "127.0.0.1", 0).start()
        handler = EchoInvokes()
        runner, url = await serve(handler)
        started.update(url=url, service=f"http://127.0.0.1:{crunner.addresses[0][1]}/", runners=[runner, crunner], handler=handler)

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(boot(), loop).result(30)
    session = requests.Session()
    session.trust_env = False
    yield started | {"http": session}
    for runner in started["runners"]:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=5), max_leaves=30)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=JSON, as_activity=st.booleans())
def test_random_json_never_gets_a_5xx(live_bot: Any, payload: Any, as_activity: bool) -> None:
    body = payload
    if as_activity and isinstance(payload, dict):
        body = {"type": "message", "channelId": "msteams", "serviceUrl": live_bot["service"], "conversation": {"id": "c"}, **payload}
    r = live_bot["http"].post(f"{live_bot['url']}/api/messages", json=body, timeout=30)
    assert r.status_code < 500, (body, r.status_code, r.text[:300])
    assert live_bot["http"].get(f"{live_bot['url']}/healthz", timeout=10).status_code == 200


async def test_health_readiness_and_graceful_shutdown(connector: Connector) -> None:
    state = {"ok": False}

    async def check() -> bool:
        return state["ok"]

    handler = EchoInvokes()
    runner, url = await serve(handler, {"storage": check})
    async with aiohttp.ClientSession() as http:
        assert (await (await http.get(f"{url}/healthz")).json()) == {"status": "alive"}
        not_ready = await http.get(f"{url}/readyz")
        assert not_ready.status == 503 and (await not_ready.json())["failing"] == ["storage"]
        state["ok"] = True
        assert (await http.get(f"{url}/readyz")).status == 200
        slow = asyncio.ensure_future(http.post(f"{url}/api/messages", json=message(personal(RILEY), RILEY, connector.url, "slow 0.5")))
        await asyncio.sleep(0.1)
        await runner.cleanup()
        response = await slow
        assert response.status == 201
    assert handler.turns == 1


def test_refuses_to_start_without_app_id_on_a_public_address() -> None:
    with pytest.raises(ConfigError) as info:
        BotSettings.from_env({"HOST": "0.0.0.0"}, dotenv=None)
    assert info.value.variable == "MicrosoftAppId" and "127.0.0.1" in str(info.value)
    with pytest.raises(ConfigError) as single:
        BotSettings.from_env({"MicrosoftAppId": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"}, dotenv=None)
    assert single.value.variable == "MicrosoftAppPassword"
    assert BotSettings.from_env({"HOST": "::1"}, dotenv=None).auth_enabled is False
    ok = BotSettings.from_env({"MicrosoftAppId": "a", "MicrosoftAppPassword": "Pw-9~zz-secret", "MicrosoftAppTenantId": "t", "HOST": "0.0.0.0",
                               "SETUP_APPROVERS": "x", "ALLOWED_TENANT_IDS": "t"}, dotenv=None)
    assert ok.auth_enabled and "Pw-9~zz-secret" not in repr(ok)


REACHABLE = {"MicrosoftAppId": "a", "MicrosoftAppPassword": "Pw-9~zz-secret", "MicrosoftAppTenantId": "t", "HOST": "0.0.0.0"}


def test_reachable_from_teams_it_is_closed_by_default() -> None:
    """Edges #2: with an app id the bot used to answer anyone in any tenant and let them approve their own plan."""
    with pytest.raises(ConfigError) as closed:
        BotSettings.from_env(REACHABLE, dotenv=None)
    assert "SETUP_APPROVERS" in str(closed.value) and "ALLOWED_TENANT_IDS" in str(closed.value) and "ALLOW_ANYONE=true" in str(closed.value)
    with pytest.raises(ConfigError) as tenants:
        BotSettings.from_env({**REACHABLE, "SETUP_APPROVERS": "x"}, dotenv=None)
    assert tenants.value.variable == "ALLOWED_TENANT_IDS"
    named = BotSettings.from_env({**REACHABLE, "SETUP_APPROVERS": "x", "ALLOWED_TENANT_IDS": "t"}, dotenv=None)
    assert named.require_second_approver and not named.allow_anyone, "nobody approves their own plan by default"
    opened = BotSettings.from_env({**REACHABLE, "ALLOW_ANYONE": "true"}, dotenv=None)
    assert opened.allow_anyone and opened.require_second_approver
    assert not BotSettings.from_env({**REACHABLE, "ALLOW_ANYONE": "true", "REQUIRE_SECOND_APPROVER": "false"}, dotenv=None).require_second_approver
    local = BotSettings.from_env({}, dotenv=None)
    assert not local.auth_enabled and not local.require_second_approver and not local.allow_anyone, "trying it locally stays open"


def test_msrest_safe_codes_patch_gives_the_identical_retry_list() -> None:
    original = [i for i in range(500) if i != 408] + [501, 505]
    assert isinstance(ClientRetryPolicy.safe_codes, frozenset)
    assert ClientRetryPolicy().policy.status_forcelist == [i for i in range(999) if i not in original]
