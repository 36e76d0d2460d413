"""The limit: a bare aiohttp handler that parses a Teams activity and posts the reply to the connector.

No botbuilder, no state: what any bot on this machine costs at least. One pooled client session.
"""

from __future__ import annotations

import json
import os
import uuid
from urllib.parse import quote

from aiohttp import ClientSession, TCPConnector, web

SESSION: web.AppKey[ClientSession] = web.AppKey("session", ClientSession)


async def messages(request: web.Request) -> web.Response:
    activity = await request.json()
    if activity.get("type") != "message":
        return web.Response(status=201)
    conv = activity["conversation"]["id"]
    reply = {
        "type": "message",
        "id": str(uuid.uuid4()),
        "text": f"Echo: {activity.get('text', '')}",
        "conversation": activity["conversation"],
        "from": activity["recipient"],
        "recipient": activity["from"],
        "replyToId": activity.get("id"),
    }
    url = f"{activity['serviceUrl'].rstrip('/')}/v3/conversations/{quote(conv, safe='')}/activities/{quote(activity['id'])}"
    async with request.app[SESSION].post(url, data=json.dumps(reply), headers={"Content-Type": "application/json"}) as r:
        await r.read()
    return web.Response(status=201)


async def _session(app: web.Application):  # type: ignore[no-untyped-def]
    app[SESSION] = ClientSession(connector=TCPConnector(limit=100))
    yield
    await app[SESSION].close()


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


def main() -> None:
    app = web.Application()
    app.router.add_post("/api/messages", messages)
    app.router.add_get("/healthz", healthz)
    app.cleanup_ctx.append(_session)
    web.run_app(app, host="127.0.0.1", port=int(os.environ.get("PORT", "3981")), print=None, access_log=None)


if __name__ == "__main__":
    main()
