"""The Bot Framework adapter, with two fixes to botbuilder 4.17.1 applied once, here:

1. CloudAdapter double-serializes invoke responses (its `process` calls `serializer_helper` on a body that
   `ActivityHandler` already serialized to a dict), so every invoke with a body (Action.Execute, task/fetch,
   task/submit) answers HTTP 500. The adapter module's serializer is made to pass plain JSON values through.
2. msrest builds its retry list with `i not in safe_codes` over a list, ~3 ms per connector client. Making
   `safe_codes` a frozenset gives the identical list for a fraction of the cost.
"""

from __future__ import annotations

import logging
from typing import Any

import botbuilder.integration.aiohttp.cloud_adapter as _cloud_adapter
from botbuilder.core import TurnContext
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import ActivityTypes
from msrest.universal_http.requests import ClientRetryPolicy

from .config import BotSettings

log = logging.getLogger(__name__)
_JSON = (dict, list, str, int, float, bool)


def _patch_invoke_serialization() -> None:
    original = _cloud_adapter.serializer_helper
    if getattr(original, "_tolerant", False):
        return

    def tolerant(value: Any) -> Any:
        if value is None or isinstance(value, _JSON):
            return value
        return original(value)

    tolerant._tolerant = True  # type: ignore[attr-defined]
    _cloud_adapter.serializer_helper = tolerant


def _patch_safe_codes() -> None:
    if not isinstance(ClientRetryPolicy.safe_codes, frozenset):
        ClientRetryPolicy.safe_codes = frozenset(ClientRetryPolicy.safe_codes)


_patch_invoke_serialization()
_patch_safe_codes()


class _Config:
    """ConfigurationBotFrameworkAuthentication reads attributes, not environment variable names."""

    def __init__(self, settings: BotSettings) -> None:
        self.APP_ID = settings.app_id
        self.APP_PASSWORD = settings.app_password
        self.APP_TYPE = settings.app_type if settings.app_id else "MultiTenant"
        self.APP_TENANTID = settings.app_tenant_id


def create_adapter(settings: BotSettings) -> CloudAdapter:
    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(_Config(settings)))

    async def on_error(context: TurnContext, error: Exception) -> None:
        log.error("turn failed: %s: %s", type(error).__name__, error, exc_info=(type(error), error, error.__traceback__))
        if context.activity.type == ActivityTypes.message:
            try:
                await context.send_activity("Something went wrong on my side, and nothing was changed by this message. "
                                            "Try again; if it keeps happening, tell your administrator to check the bot's log.")
            except Exception:  # noqa: BLE001 - the connector may be what failed
                log.warning("could not tell the user about the failed turn")

    adapter.on_turn_error = on_error
    return adapter
