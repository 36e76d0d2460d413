"""Small helpers shared by the operator endpoint's modules: its JSON errors, bodies and agent lookup."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aiohttp import web

if TYPE_CHECKING:
    from .app import Sandbox
    from .dataverse import Environment


def problem(status: int, message: str) -> web.Response:
    """The operator endpoint's error: {"error": "<what to do>"}."""
    return web.json_response({"error": message}, status=status)


def _raise(status: type[web.HTTPException], message: str) -> web.HTTPException:
    return status(text=json.dumps({"error": message}), content_type="application/json")


async def read_json(request: web.Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.text() or "{}")
    except json.JSONDecodeError as exc:
        raise _raise(web.HTTPBadRequest, f"body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise _raise(web.HTTPBadRequest, "body must be a JSON object")
    return data


async def find_bot(sb: "Sandbox", bot_id: str) -> tuple["Environment", dict[str, Any]]:
    """The agent and its environment, or a 404 the caller lets through."""
    for env in sb.environments.values():
        bot = await env.bot(bot_id.lower())
        if bot is not None:
            return env, bot
    raise _raise(web.HTTPNotFound, f"no agent with bot id {bot_id.lower()}")


def find_application(sb: "Sandbox", app_id: str) -> dict[str, Any] | None:
    """An app registration by its client id, whoever owns it (the portals see the whole directory)."""
    return next((a for a in sb.store.all("application") if a["appId"] == app_id), None)
