"""App-only tokens from msal's ConfidentialClientApplication, acquired off the event loop and cached."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any
from urllib.parse import urlsplit

import jwt
import msal
import requests

from .config import Settings
from .errors import AuthenticationError
from .trust import TrustingSession

log = logging.getLogger(__name__)

# msal asks login.microsoftonline.com about any authority host it does not know; for those we turn that off.
_MICROSOFT_HOSTS = {"login.microsoftonline.com", "login.microsoftonline.us", "login.chinacloudapi.cn", "login.partner.microsoftonline.cn", "login.windows.net", "login.microsoft.com", "sts.windows.net"}
_REFRESH_MARGIN_S = 300


def instance_discovery(authority_host: str) -> bool | None:
    """msal's `instance_discovery`: its default for Microsoft's own hosts, off for any other (a national cloud proxy, the sandbox)."""
    return None if (urlsplit(authority_host).hostname or "") in _MICROSOFT_HOSTS else False


class TokenProvider:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._app: msal.ConfidentialClientApplication | None = None
        self._cache: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def _build(self) -> msal.ConfidentialClientApplication:
        s = self._settings
        credential: Any
        if s.client_certificate_path is not None:
            pem = s.client_certificate_path.read_text()
            credential = {"private_key": pem, "public_certificate": pem}
        else:
            credential = s.client_secret
        session = TrustingSession(s.ca_bundle)
        return msal.ConfidentialClientApplication(
            s.client_id,
            client_credential=credential,
            authority=f"{s.authority_host}/{s.tenant_id}",
            instance_discovery=instance_discovery(s.authority_host),
            http_client=session,
        )

    def _acquire(self, resource: str, force_refresh: bool) -> dict[str, Any]:
        if self._app is None:
            self._app = self._build()
        elif force_refresh:
            self._app.remove_tokens_for_client()
        result: dict[str, Any] = self._app.acquire_token_for_client([f"{resource}/.default"])
        return result

    async def token(self, resource: str, *, force_refresh: bool = False) -> str:
        cached = self._cache.get(resource)
        if cached and not force_refresh and cached[1] - _REFRESH_MARGIN_S > time.time():
            return cached[0]
        lock = self._locks.setdefault(resource, asyncio.Lock())
        async with lock:
            cached = self._cache.get(resource)
            if cached and not force_refresh and cached[1] - _REFRESH_MARGIN_S > time.time():
                return cached[0]
            try:
                result = await asyncio.to_thread(self._acquire, resource, force_refresh)
            except (requests.RequestException, ValueError) as exc:
                raise AuthenticationError(
                    f"Could not reach the Entra token endpoint at {self._settings.authority_host}: {type(exc).__name__}.",
                    status=0, service="entra",
                    action="Check AZURE_AUTHORITY_HOST, PROVISIONING_TENANT_ID and the network.",
                ) from None
            if "access_token" not in result:
                raise _token_error(result, self._settings)
            token = str(result["access_token"])
            self._cache[resource] = (token, time.time() + float(result.get("expires_in", 3599)))
            return token

    async def roles(self, resource: str) -> frozenset[str]:
        """The `roles` claim of the current token (unverified: the resource verifies it; we only report)."""
        claims = jwt.decode(await self.token(resource), options={"verify_signature": False})
        return frozenset(claims.get("roles", []))


def _token_error(result: dict[str, Any], settings: Settings) -> AuthenticationError:
    error = str(result.get("error", "unknown_error"))
    description = str(result.get("error_description", "")).split(" Trace ID:")[0]
    codes = result.get("error_codes") or []
    actions = {
        "invalid_client": "Check PROVISIONING_CLIENT_SECRET (use the secret's value, not its ID) or the certificate, and that it has not expired.",
        "unauthorized_client": "Check PROVISIONING_CLIENT_ID and PROVISIONING_TENANT_ID: the app registration must exist in that tenant.",
        "invalid_resource": "The resource is not known in this tenant: check DATAVERSE_URL.",
        "invalid_scope": "The requested scope is not valid for app-only tokens.",
    }
    return AuthenticationError(
        f"The Entra token endpoint refused the provisioning identity ({error}).",
        status=400 if error != "invalid_client" else 401,
        code=f"AADSTS{codes[0]}" if codes else error,
        ms_message=description,
        request_id=str(result.get("correlation_id", "")),
        service="entra",
        action=actions.get(error, f"Check the provisioning identity {settings.client_id} in tenant {settings.tenant_id}."),
    )
