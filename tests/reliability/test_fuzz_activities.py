"""Property-based fuzzing of /api/messages on the real bot (dialogs, job actions, storage, provisioning service,
sandbox): malformed activities, card submissions and invokes with any verb and any data, in any order, in a few
conversations, some of them mid-dialog. The bot must never answer 5xx, never change the tenant or start a job on
its own, and stay alive."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cards.actions import Verb
from sandbox import Sandbox
from tests.fixtures.botapp import start_bot
from tests.fixtures.sandbox import sandbox_options
from tests.fixtures.teams import RILEY, Chat, activity, message

VERBS = [v for k, v in vars(Verb).items() if k.isupper()]
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
                    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=4),
                    max_leaves=15)
IDS = st.one_of(st.just(""), st.text(max_size=12), st.uuids().map(str))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The real bot and the sandbox on a background loop, shared by every example."""
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    state: dict[str, Any] = {}

    async def boot() -> None:
        sandbox = Sandbox(sandbox_options(tmp / "sandbox"))
        await sandbox.start()
        session = aiohttp.ClientSession()
        from aiohttp import web

        connector = web.Application()

        async def answer(_r: web.Request) -> web.Response:
            return web.json_response({"id": "act-1"})

        connector.router.add_route("*", "/{tail:.*}", answer)
        runner = web.AppRunner(connector, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        bot = await start_bot(sandbox, tmp / "bot", session)
        state.update(sandbox=sandbox, session=session, bot=bot, connector=runner,
                     service_url=f"http://127.0.0.1:{runner.addresses[0][1]}/")

    asyncio.run_coroutine_threadsafe(boot(), loop).result(60)
    http = requests.Session()
    http.trust_env = False
    state["http"] = http
    state["run"] = lambda coro: asyncio.run_coroutine_threadsafe(coro, loop).result(60)
    before = state["run"](state["sandbox"].snapshot())
    state["apps_before"] = len(before["applications"])
    yield state

    async def stop() -> None:
        await state["bot"].runner.cleanup()
        await state["connector"].cleanup()
        await state["session"].close()
        await state["sandbox"].stop()

    state["run"](stop())
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def _activity(draw: Any, service_url: str) -> dict[str, Any]:
    chat = Chat(draw(st.sampled_from(["a:fuzz-1", "a:fuzz-2", "19:fuzz@thread.tacv2;messageid=1"])),
                draw(st.sampled_from(["personal", "groupChat", "channel"])))
    kind = draw(st.sampled_from(["text", "submit", "execute", "task", "other-invoke", "update", "raw"]))
    if kind == "text":
        return message(chat, RILEY, service_url, draw(st.one_of(st.sampled_from(["/setup copilot", "setup copilot", "cancel", "status", "help"]),
                                                               st.text(max_size=40))), mention=draw(st.booleans()))
    data = {"action": draw(st.one_of(st.sampled_from(VERBS), st.text(max_size=10))), "card": draw(IDS), "job": draw(IDS),
            "step": draw(st.one_of(st.sampled_from(["copilot_authentication", "secured_access", "publish"]), st.text(max_size=8))),
            **draw(st.dictionaries(st.sampled_from(["agent", "app_display_name", "plan_hash", "secret_lifetime_days", "redirect_uris", "x"]), JSON, max_size=3))}
    if kind == "submit":
        return activity(chat, RILEY, service_url, value=draw(st.one_of(st.just(data), JSON)), replyToId=draw(IDS))
    if kind == "execute":
        return activity(chat, RILEY, service_url, type="invoke", name="adaptiveCard/action", replyToId=draw(IDS),
                        value=draw(st.one_of(st.just({"action": {"type": "Action.Execute", "verb": data["action"], "data": data}}), JSON)))
    if kind == "task":
        return activity(chat, RILEY, service_url, type="invoke", name=draw(st.sampled_from(["task/fetch", "task/submit"])),
                        value=draw(st.one_of(st.just({"data": data}), JSON)))
    if kind == "other-invoke":
        return activity(chat, RILEY, service_url, type="invoke", name=draw(st.text(max_size=20)), value=draw(JSON))
    if kind == "update":
        return activity(chat, RILEY, service_url, type=draw(st.sampled_from(["conversationUpdate", "installationUpdate", "messageReaction", "event", "typing"])),
                        membersAdded=draw(st.one_of(st.none(), st.lists(st.fixed_dictionaries({"id": st.text(max_size=10)}), max_size=2))))
    body = activity(chat, RILEY, service_url)
    body.update(draw(st.dictionaries(st.sampled_from(["from", "recipient", "conversation", "channelData", "entities", "attachments", "value", "text", "replyToId", "locale"]),
                                     JSON, max_size=3)))
    return body


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_no_activity_gets_a_5xx_or_changes_the_tenant(live: dict[str, Any], data: st.DataObject) -> None:
    body = data.draw(st.builds(lambda: None).flatmap(lambda _: st.composite(lambda draw: _activity(draw, live["service_url"]))()))
    r = live["http"].post(live["bot"].url, json=body, timeout=30)
    assert r.status_code < 500, (body, r.status_code, r.text[:300])
    assert live["http"].get(live["bot"].url.replace("/api/messages", "/healthz"), timeout=10).status_code == 200


def test_after_fuzzing_no_job_was_started_and_the_tenant_is_unchanged(live: dict[str, Any]) -> None:
    jobs = live["run"](live["bot"].service.list_jobs())
    assert jobs == []
    after = live["run"](live["sandbox"].snapshot())
    assert len(after["applications"]) == live["apps_before"]
