"""The Bot Framework adapter: botbuilder's CloudAdapterBase (turn pipeline, TurnContext, proactive messages) with
the parts that cost or misbehave in 4.17.1 replaced:

- inbound requests are authenticated by `InboundAuth` (async key fetch) instead of botbuilder's validators, which
  fetch signing keys with blocking `requests` calls on the event loop;
- replies go through `ConnectorPool` (one pooled aiohttp session, clients reused) instead of a new msrest
  ConnectorClient, a new TokenApiClient and a `requests` thread per turn;
- the HTTP layer (bot/web.py) parses each activity once and writes invoke responses itself, so CloudAdapter's
  double serialization of invoke bodies (HTTP 500 on every Action.Execute) never happens.

msrest's `ClientRetryPolicy.safe_codes` is also made a frozenset once, here: any msrest client that is still built
(a user-token client, if OAuth is ever added) then costs microseconds instead of ~3 ms.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable

from botbuilder.core import CloudAdapterBase, InvokeResponse, TurnContext
from botbuilder.schema import Activity, ActivityTypes
from botframework.connector.auth import (
    AuthenticateRequestResult,
    AuthenticationConstants,
    BotFrameworkAuthentication,
    ClaimsIdentity,
    ConnectorFactory,
    UserTokenClient,
)
from msrest.universal_http.requests import ClientRetryPolicy

from .config import BotSettings
from .connector import ConnectorPool
from .inbound_auth import InboundAuth
from .tokens import BOT_FRAMEWORK, BotTokens

log = logging.getLogger(__name__)
CALLER_ID = "urn:botframework:azure"


def patch_safe_codes() -> None:
    if not isinstance(ClientRetryPolicy.safe_codes, frozenset):
        ClientRetryPolicy.safe_codes = frozenset(ClientRetryPolicy.safe_codes)


patch_safe_codes()


class NoUserTokens(UserTokenClient):  # type: ignore[misc]
    """This bot signs nobody in (no OAuth prompt, no SSO): user-token calls are a programming error."""

    async def _unsupported(self, *_args: Any, **_kwargs: Any) -> Any:
        raise NotImplementedError("Copilot Setup Bot does not use user sign-in (no OAuth connection is configured).")

    get_user_token = get_sign_in_resource = sign_out_user = _unsupported
    get_token_status = get_aad_tokens = exchange_token = _unsupported


class BotAuthentication(BotFrameworkAuthentication):  # type: ignore[misc]
    """Who may call the bot (InboundAuth, or loopback-only when there is no app id) and how it calls back."""

    def __init__(self, settings: BotSettings, connectors: ConnectorPool, inbound: InboundAuth) -> None:
        self._settings = settings
        self.connectors = connectors
        self.inbound = inbound
        self._user_tokens = NoUserTokens()

    async def authenticate_request(self, activity: Activity, auth_header: str) -> AuthenticateRequestResult:
        if self._settings.auth_enabled:
            identity = await self.inbound.authenticate(auth_header, activity)
        else:  # no app id: web.py only lets loopback service URLs this far
            identity = ClaimsIdentity({}, True, AuthenticationConstants.ANONYMOUS_AUTH_TYPE)
        result = AuthenticateRequestResult()
        result.claims_identity = identity
        result.audience = BOT_FRAMEWORK
        result.caller_id = CALLER_ID
        result.connector_factory = self.connectors
        return result

    async def authenticate_streaming_request(self, auth_header: str, channel_id_header: str) -> AuthenticateRequestResult:
        raise NotImplementedError("Copilot Setup Bot is served over HTTP only (no Direct Line streaming).")

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        return self.connectors

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> UserTokenClient:
        return self._user_tokens

    def get_originating_audience(self) -> str:
        return BOT_FRAMEWORK


class SetupAdapter(CloudAdapterBase):  # type: ignore[misc]
    def __init__(self, settings: BotSettings) -> None:
        self.connectors = ConnectorPool(BotTokens(settings), BOT_FRAMEWORK)
        self.inbound = InboundAuth(settings)
        super().__init__(BotAuthentication(settings, self.connectors, self.inbound))
        self.on_turn_error = self._on_error

    async def handle(self, activity: Activity, auth_header: str,
                     logic: Callable[[TurnContext], Awaitable[None]]) -> InvokeResponse | None:
        """Authenticate and run one inbound activity; raises Unauthenticated for a bad token."""
        response: InvokeResponse | None = await self.process_activity(auth_header, activity, logic)
        return response

    async def close(self) -> None:
        await self.connectors.close()
        await self.inbound.close()

    @staticmethod
    async def _on_error(context: TurnContext, error: Exception) -> None:
        log.error("turn failed: %s: %s", type(error).__name__, error, exc_info=(type(error), error, error.__traceback__))
        if context.activity.type == ActivityTypes.message:
            try:
                await context.send_activity("Something went wrong on my side, and nothing was changed by this message. "
                                            "Try again; if it keeps happening, tell your administrator to check the bot's log.")
            except Exception:  # noqa: BLE001 - the connector may be what failed
                log.warning("could not tell the user about the failed turn")


def create_adapter(settings: BotSettings) -> SetupAdapter:
    return SetupAdapter(settings)
