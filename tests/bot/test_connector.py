"""Replies go out on one pooled session, with the Bot Connector's REST paths, and failures come back typed."""

from __future__ import annotations

import time

import pytest
from aiohttp import web
from botbuilder.schema import Activity

from bot.connector import ConnectorPool
from bot.errors import ConnectorError


class Tokens:
    def __init__(self, token: str | None) -> None:
        self.value = token
        self.audiences: list[str] = []

    async def token(self, audience: str) -> str | None:
        self.audiences.append(audience)
        return self.value


async def _server(handler) -> tuple[web.AppRunner, str]:  # type: ignore[no-untyped-def]
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/"


async def test_operations_use_the_rest_paths_one_connection_and_the_bots_token() -> None:
    seen: list[tuple[str, str, str, str, int]] = []

    async def handle(request: web.Request) -> web.Response:
        peer = request.transport.get_extra_info("peername")[1] if request.transport else 0
        body = await request.read()
        seen.append((request.method, request.raw_path, request.headers.get("Authorization", ""), body.decode(), peer))
        return web.json_response({"id": "act-1"} if request.method != "DELETE" else {})

    runner, url = await _server(handle)
    tokens = Tokens("tok-abc")
    pool = ConnectorPool(tokens, "https://api.botframework.com")
    try:
        client = await pool.create(url, None)
        assert client is await pool.create(url, "https://api.botframework.com")  # one client per URL and audience
        conversations = client.conversations
        reply = Activity(type="message", text="hi")
        assert (await conversations.send_to_conversation("a:1/x", reply)).id == "act-1"
        assert (await conversations.reply_to_activity("a:1/x", "m 1", reply)).id == "act-1"
        assert (await conversations.update_activity("a:1/x", "m 1", reply)).id == "act-1"
        await conversations.delete_activity("a:1/x", "m 1")
        for _ in range(20):
            await conversations.send_to_conversation("a:1/x", reply)
    finally:
        await pool.close()
        await runner.cleanup()
    assert [(m, p) for m, p, *_ in seen[:4]] == [
        ("POST", "/v3/conversations/a:1%2Fx/activities"), ("POST", "/v3/conversations/a:1%2Fx/activities/m%201"),
        ("PUT", "/v3/conversations/a:1%2Fx/activities/m%201"), ("DELETE", "/v3/conversations/a:1%2Fx/activities/m%201")]
    assert all(auth == "Bearer tok-abc" for _, _, auth, _, _ in seen)
    assert '"text": "hi"' in seen[0][3] and seen[3][3] == ""
    assert len({peer for *_, peer in seen}) == 1, "every call should reuse one keep-alive connection"
    assert set(tokens.audiences) == {"https://api.botframework.com"}


async def test_throttling_is_ridden_out_and_what_cannot_succeed_fails_typed() -> None:
    answers = [(429, {"error": {"code": "Throttled", "message": "Slow down"}}, {"Retry-After": "1"}),
               (200, {"id": "act-9"}, {}),
               (403, {"error": {"code": "BotNotInConversationRoster", "message": "The bot is not part of the conversation roster."}}, {}),
               *[(502, None, {})] * 4]
    seen: list[tuple[float, str]] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append((time.monotonic(), request.headers.get("Authorization", "<none>")))
        status, body, headers = answers.pop(0)
        if body is None:
            return web.Response(status=status, text="<html>Bad gateway</html>")
        return web.json_response(body, status=status, headers=headers)

    runner, url = await _server(handle)
    pool = ConnectorPool(Tokens(None), "https://api.botframework.com")
    try:
        conversations = (await pool.create(url)).conversations
        sent = await conversations.send_to_conversation("c", Activity(type="message", text="x"))
        with pytest.raises(ConnectorError) as roster:
            await conversations.send_to_conversation("c", Activity(type="message", text="x"))
        with pytest.raises(ConnectorError) as gateway:
            await conversations.send_to_conversation("c", Activity(type="message", text="x"))
    finally:
        await pool.close()
        await runner.cleanup()
    assert sent.id == "act-9" and seen[1][0] - seen[0][0] >= 0.95  # waited as Retry-After asked
    assert (roster.value.status, roster.value.code, roster.value.transient) == (403, "BotNotInConversationRoster", False)
    assert "not part of the conversation roster" in str(roster.value)
    assert (gateway.value.status, gateway.value.transient) == (502, True)
    assert len(seen) == 7 and answers == []  # 429 once + ok, 403 once (never retried), 502 four times
    assert {auth for _, auth in seen} == {"<none>"}
