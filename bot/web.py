"""The bot's HTTP front door: /api/messages, /healthz and /readyz.

Each activity is parsed and read once, here, then handed to the adapter. Bad requests get a 4xx with a JSON
reason, never a 500: too large (413), not JSON (400, or 415 for another media type), not an activity (400), no
valid Bot Framework token (401). With inbound authentication off (no MicrosoftAppId, loopback only), a serviceUrl
that is not loopback is refused too, so the bot never posts to an address a request names. Invoke responses are
written here, as JSON, with the status the bot chose.
Shutdown stops taking requests and lets turns in flight finish (bounded).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any, Awaitable, Callable, Mapping, Sequence
from urllib.parse import urlsplit

from aiohttp import web
from botbuilder.core import Bot
from botbuilder.schema import Activity

from .adapter import SetupAdapter
from .config import BotSettings, is_loopback
from .errors import Unauthenticated
from .observability import CONTENT_TYPE, Metrics, conversation
from .wire import from_wire, to_wire

log = logging.getLogger(__name__)
Check = Callable[[], Awaitable[bool]]
SHUTDOWN_GRACE_S = 15.0


async def _nothing(_metrics: Metrics) -> None:
    return None


class InFlight:
    def __init__(self) -> None:
        self.count = 0
        self.idle = asyncio.Event()
        self.idle.set()

    def __enter__(self) -> None:
        self.count += 1
        self.idle.clear()

    def __exit__(self, *exc: Any) -> None:
        self.count -= 1
        if self.count == 0:
            self.idle.set()


SETTINGS: web.AppKey[BotSettings] = web.AppKey("settings", BotSettings)
IN_FLIGHT: web.AppKey[InFlight] = web.AppKey("in_flight", InFlight)


def _bad(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


class NotAnActivity(ValueError):
    pass


def read_activity(body: Any, settings: BotSettings) -> Activity:
    """The activity in this body, or NotAnActivity saying why the bot cannot act on it."""
    reason = problem(body, settings)
    if reason:
        raise NotAnActivity(reason)
    try:
        activity: Activity = from_wire(Activity, body)
    except Exception as exc:  # noqa: BLE001 - msrest raises many kinds; all mean "not an activity"
        raise NotAnActivity(f"the activity could not be read ({type(exc).__name__})") from None
    return activity


def problem(body: Any, settings: BotSettings) -> str | None:
    """Why this body is not an activity the bot can act on, or None (checks the shape; msrest reads the rest)."""
    if not isinstance(body, dict):
        return "the body must be a JSON object (an activity)"
    kind = body.get("type")
    if not isinstance(kind, str) or not kind:
        return "the activity has no 'type'"
    for name in ("serviceUrl", "channelId"):
        if not isinstance(body.get(name), str) or not body.get(name):
            return f"the activity has no '{name}'"
    conversation = body.get("conversation")
    if not isinstance(conversation, dict) or not isinstance(conversation.get("id"), str) or not conversation.get("id"):
        return "the activity has no 'conversation.id'"
    sender = body.get("from")
    if sender is not None and (not isinstance(sender, dict) or not isinstance(sender.get("id", ""), str)):
        return "'from' must be an object with an 'id'"
    url = urlsplit(body["serviceUrl"])
    if url.scheme not in ("http", "https") or not url.hostname:
        return "'serviceUrl' is not an http(s) URL"
    if not settings.auth_enabled and not is_loopback(url.hostname):
        return "inbound authentication is off (no MicrosoftAppId), so only a loopback serviceUrl is accepted"
    return None


def create_app(
    *,
    settings: BotSettings,
    adapter: SetupAdapter,
    bot: Bot,
    readiness: Mapping[str, Check] | None = None,
    on_startup: Sequence[Callable[[web.Application], Awaitable[None]]] = (),
    on_shutdown: Sequence[Callable[[web.Application], Awaitable[None]]] = (),
    metrics: Metrics | None = None,
    refresh_metrics: Callable[[Metrics], Awaitable[None]] | None = None,
) -> web.Application:
    app = web.Application(client_max_size=settings.max_body_bytes)
    app[SETTINGS] = settings
    app[IN_FLIGHT] = InFlight()
    checks = dict(readiness or {})

    async def messages(request: web.Request) -> web.StreamResponse:
        if "application/json" not in request.headers.get("Content-Type", ""):
            return _bad(415, "Content-Type must be application/json")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _bad(413, f"the body is larger than {settings.max_body_bytes} bytes")
        try:
            body = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            return _bad(400, "the body is not valid JSON")
        try:
            activity = read_activity(body, settings)
        except NotAnActivity as exc:
            return _bad(400, str(exc))
        started, kind = time.perf_counter(), str(activity.type or "unknown")
        conversation.set(activity.conversation.id if activity.conversation else None)
        with app[IN_FLIGHT]:
            try:
                invoke = await adapter.handle(activity, request.headers.get("Authorization", ""), bot.on_turn)
            except Unauthenticated as exc:
                log.info("refused an unauthenticated request: %s", exc.reason)
                if metrics:
                    metrics.turn(kind, started, "unauthenticated")
                return _bad(401, f"unauthorized: {exc.reason}")
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                log.warning("activity refused: %s", type(exc).__name__)
                if metrics:
                    metrics.turn(kind, started, "refused")
                return _bad(400, "the activity could not be processed")
        if metrics:
            metrics.turn(kind, started, "ok")
        if invoke is None:
            return web.Response(status=201)
        return web.json_response(to_wire(invoke.body), status=int(invoke.status or 200))

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_request: web.Request) -> web.Response:
        failing = []
        for name, check in checks.items():
            try:
                ok = await asyncio.wait_for(check(), 5)
            except Exception:  # noqa: BLE001 - a failing check is "not ready", not an error page
                ok = False
            if not ok:
                failing.append(name)
        if failing:
            return web.json_response({"status": "not ready", "failing": failing}, status=503)
        return web.json_response({"status": "ready", "checks": sorted(checks)})

    async def drain(_app: web.Application) -> None:
        try:
            await asyncio.wait_for(app[IN_FLIGHT].idle.wait(), SHUTDOWN_GRACE_S)
        except asyncio.TimeoutError:
            log.warning("%d turn(s) still running after %.0f s; stopping anyway", app[IN_FLIGHT].count, SHUTDOWN_GRACE_S)

    app.router.add_post("/api/messages", messages)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)

    async def prometheus(_request: web.Request) -> web.Response:
        if metrics is None:
            return _bad(404, "metrics are not enabled")
        body = await metrics.render(refresh_metrics or _nothing)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})

    app.router.add_get("/metrics", prometheus)
    app.on_startup.extend(on_startup)
    app.on_shutdown.append(drain)
    app.on_shutdown.extend(on_shutdown)

    async def close_adapter(_app: web.Application) -> None:  # after on_shutdown: the notifier may post until then
        await adapter.close()

    app.on_cleanup.append(close_adapter)
    return app
