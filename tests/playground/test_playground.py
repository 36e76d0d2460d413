"""Through a real Teams-like client: the Microsoft 365 Agents Playground, driven through its own HTTP and
WebSocket interface (what its web page uses), in front of the whole bot and the sandbox."""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import pytest

from scripts.playground import Playground

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed; the Agents Playground needs it")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
async def playground(running_bot: Any) -> AsyncIterator[Playground]:
    pg = Playground(running_bot.url.replace("127.0.0.1", "localhost"), free_port())
    await pg.start(timeout=60)
    try:
        yield pg
    finally:
        await pg.stop()


async def next_card(ws: aiohttp.ClientWebSocketResponse, words: str, timeout: float = 20.0) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        msg = await asyncio.wait_for(ws.receive(), max(0.1, deadline - loop.time()))
        if msg.type != aiohttp.WSMsgType.TEXT:
            continue
        event = json.loads(msg.data)
        message = event.get("message") or {}
        if words in json.dumps(message.get("attachments") or [], ensure_ascii=False):
            return dict(message)


async def test_setup_through_the_agents_playground(playground: Playground) -> None:
    async with aiohttp.ClientSession() as http:
        config = (await (await http.get(f"{playground.url}/_internal/v1/config")).json())["config"]
        chat, user = config["personalChat"]["id"], config["currentUser"]["id"]
        async with http.ws_connect(f"{playground.url}/_ws_conversation/v1/conversations/stream") as ws:
            r = await http.post(f"{playground.url}/_conversation/v1/conversations/{chat}/messages",
                                json={"from": {"id": user}, "text": "/setup copilot", "textFormat": "plain"})
            assert r.status == 200
            choose = await next_card(ws, "Set up an agent: 1 of 2")
            card = choose["attachments"][0]["content"]
            choices = next(e for e in card["body"] if e.get("id") == "agent")["choices"]
            agent = next(c["value"] for c in choices if c["title"].startswith("Contoso Support"))
            next_button = next(a for a in card["actions"] if a["title"] == "Next")
            r = await http.post(f"{playground.url}/_conversation/v1/submit", json={
                "conversation": {"id": chat}, "from": {"id": user}, "replyToId": choose["messageId"],
                "value": {**next_button["data"], "agent": agent}})
            assert r.status < 300, await r.text()
            details = await next_card(ws, "Set up an agent: 2 of 2")
            assert "Contoso Support - Copilot auth" in json.dumps(details)


async def test_team_channel_with_an_at_mention(playground: Playground) -> None:
    async with aiohttp.ClientSession() as http:
        config = (await (await http.get(f"{playground.url}/_internal/v1/config")).json())["config"]
        channel = config["teams"][0]["channels"][0]["id"]
        bot, user = config["bot"], config["users"][0]["id"]
        async with http.ws_connect(f"{playground.url}/_ws_conversation/v1/conversations/stream") as ws:
            r = await http.post(f"{playground.url}/_conversation/v1/conversations/{channel}/messages", json={
                "from": {"id": user}, "text": f"<at>{bot['name']}</at> setup copilot", "textFormat": "plain",
                "mentions": [{"mentioned": {"id": bot["id"], "name": bot["name"]}, "text": f"<at>{bot['name']}</at>"}]})
            assert r.status == 200, await r.text()
            choose = await next_card(ws, "Set up an agent: 1 of 2")
            assert choose["attachments"][0]["content"]["body"][0]["text"] == "Set up an agent: 1 of 2"


async def test_the_playgrounds_message_log_does_not_outlive_it(running_bot: Any) -> None:
    """The Playground logs every message, invoke answers included (the sandbox's client secret, shown to the
    requester); it writes them under a private directory that is removed when it stops."""
    pg = Playground(running_bot.url.replace("127.0.0.1", "localhost"), free_port())
    await pg.start(timeout=60)
    workdir = pg.workdir
    try:
        assert workdir is not None and workdir.is_dir() and (workdir.stat().st_mode & 0o077) == 0
        assert not workdir.is_relative_to(Path(__file__).resolve().parents[2])
    finally:
        await pg.stop()
    assert not workdir.exists()
