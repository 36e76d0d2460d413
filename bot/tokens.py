"""The bot's own token for calling the Bot Connector, from msal off the event loop, cached until near expiry.

SingleTenant bots ask their tenant, MultiTenant bots ask `botframework.com`, UserAssignedMSI bots ask the managed
identity endpoint. Without an app id (local testing against loopback only) there is no token.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msal
import requests

from provisioning.auth import instance_discovery
from provisioning.trust import TrustingSession

from .config import BotSettings
from .errors import TokenError

BOT_FRAMEWORK = "https://api.botframework.com"
_REFRESH_MARGIN_S = 300
_ACTIONS = {
    "invalid_client": "Check MicrosoftAppPassword (the secret's value, not its ID) and that it has not expired.",
    "unauthorized_client": "Check MicrosoftAppId and MicrosoftAppTenantId: the bot's app registration must exist in that tenant.",
}


class BotTokens:
    def __init__(self, settings: BotSettings) -> None:
        self._settings = settings
        self._client: Any = None
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = asyncio.Lock()

    def _build(self) -> Any:
        s = self._settings
        session = TrustingSession(s.ca_bundle)
        if s.app_type == "UserAssignedMSI":
            return msal.ManagedIdentityClient(msal.UserAssignedManagedIdentity(client_id=s.app_id), http_client=session)
        tenant = s.app_tenant_id if s.app_type == "SingleTenant" else "botframework.com"
        return msal.ConfidentialClientApplication(
            s.app_id, client_credential=s.app_password, authority=f"{s.authority_host}/{tenant}",
            instance_discovery=instance_discovery(s.authority_host), http_client=session)

    def _acquire(self, audience: str) -> dict[str, Any]:
        if self._client is None:
            self._client = self._build()
        if isinstance(self._client, msal.ManagedIdentityClient):
            result: dict[str, Any] = self._client.acquire_token_for_client(resource=audience)
        else:
            result = self._client.acquire_token_for_client([f"{audience}/.default"])
        return result

    async def token(self, audience: str) -> str | None:
        if not self._settings.app_id:
            return None
        cached = self._cache.get(audience)
        if cached and cached[1] - _REFRESH_MARGIN_S > time.time():
            return cached[0]
        async with self._lock:
            cached = self._cache.get(audience)
            if cached and cached[1] - _REFRESH_MARGIN_S > time.time():
                return cached[0]
            try:
                result = await asyncio.to_thread(self._acquire, audience)
            except (requests.RequestException, ValueError) as exc:
                raise TokenError(f"Could not reach the token endpoint at {self._settings.authority_host}: {type(exc).__name__}.") from None
            if "access_token" not in result:
                error = str(result.get("error", "unknown_error"))
                raise TokenError(f"Entra refused the bot's own identity ({error}). "
                                 + _ACTIONS.get(error, "Check MicrosoftAppId, MicrosoftAppPassword and MicrosoftAppTenantId."),
                                 code=error, transient=error not in _ACTIONS)
            token = str(result["access_token"])
            self._cache[audience] = (token, time.time() + float(result.get("expires_in", 3599)))
            return token
