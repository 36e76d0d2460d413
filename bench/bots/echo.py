"""The peer: Microsoft's stock botbuilder echo bot, in the shape of BotBuilder-Samples `02.echo-bot`
(aiohttp + CloudAdapter + ConfigurationBotFrameworkAuthentication, empty app id), unpatched.

Only what the benchmark needs to start it and a /healthz route are added.
"""

from __future__ import annotations

import os

from aiohttp import web
from botbuilder.core import ActivityHandler, MessageFactory, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication


class DefaultConfig:
    PORT = int(os.environ.get("PORT", "3982"))
    APP_ID = ""
    APP_PASSWORD = ""
    APP_TYPE = "MultiTenant"
    APP_TENANTID = ""


class EchoBot(ActivityHandler):  # type: ignore[misc]
    async def on_message_activity(self, turn_context: TurnContext) -> None:
        await turn_context.send_activity(MessageFactory.text(f"Echo: {turn_context.activity.text}"))


CONFIG = DefaultConfig()
ADAPTER = CloudAdapter(ConfigurationBotFrameworkAuthentication(CONFIG))
BOT = EchoBot()


async def messages(req: web.Request) -> web.Response:
    return await ADAPTER.process(req, BOT)  # type: ignore[no-any-return]


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "alive"})


def main() -> None:
    app = web.Application()
    app.router.add_post("/api/messages", messages)
    app.router.add_get("/healthz", healthz)
    web.run_app(app, host="127.0.0.1", port=CONFIG.PORT, print=None, access_log=None)


if __name__ == "__main__":
    main()
