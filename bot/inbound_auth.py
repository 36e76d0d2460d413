"""Checks the Bot Connector's token on every inbound request (when the bot has an app id).

The rules are the Bot Framework's ("Authenticate requests from the Bot Connector service"): a `Bearer` JWT signed
RS256 by a key from the Bot Framework's OpenID metadata, issued by `https://api.botframework.com`, for this bot's
app id, not expired (5 minutes of clock skew), its key endorsed for the activity's channel, and its `serviceurl`
claim equal to the activity's serviceUrl (so a valid token cannot make the bot post somewhere else).

botbuilder does the same checks but fetches the signing keys with blocking `requests` calls on the event loop;
here they are fetched with aiohttp, cached for a day, and fetched again (at most every 5 minutes) when a token
names a key the cache does not have, which is how key rotation shows up.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from time import monotonic
from typing import Any

import aiohttp
import jwt
from botbuilder.schema import Activity
from botframework.connector.auth import ClaimsIdentity

from .config import BotSettings
from .errors import Unauthenticated

log = logging.getLogger(__name__)
CLOCK_SKEW_S = 300
KEYS_MAX_AGE_S = 24 * 3600
UNKNOWN_KEY_REFRESH_S = 300


class _Key:
    def __init__(self, jwk: dict[str, Any]) -> None:
        self.key = jwt.PyJWK(jwk, algorithm="RS256").key
        endorsements = jwk.get("endorsements")
        self.endorsements = frozenset(endorsements) if isinstance(endorsements, list) else None


class InboundAuth:
    def __init__(self, settings: BotSettings) -> None:
        self._settings = settings
        self._keys: dict[str, _Key] = {}
        self._fetched_at: float | None = None  # never read yet (not 0: the monotonic clock starts at boot)
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    async def authenticate(self, header: str, activity: Activity) -> ClaimsIdentity:
        scheme, _, token = (header or "").partition(" ")
        if not header:
            raise Unauthenticated("the request has no Authorization header")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthenticated("the Authorization header is not a Bearer token")
        token = token.strip()
        try:
            unverified = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("the token is not a JWT") from None
        if unverified.get("alg") != "RS256":
            raise Unauthenticated("the token is not signed with RS256")
        kid = str(unverified.get("kid", ""))
        key = await self._key(kid)
        if key is None:
            raise Unauthenticated("the token is signed with a key the Bot Framework does not publish")
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=["RS256"], audience=self._settings.app_id, issuer=self._settings.token_issuer,
                leeway=CLOCK_SKEW_S, options={"require": ["exp", "iss", "aud"]})
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated("the token is for another app (audience); check that MicrosoftAppId is the Azure Bot's app id") from None
        except jwt.InvalidIssuerError:
            raise Unauthenticated("the token was not issued by the Bot Framework") from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("the token's signature is not valid") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"the token has no '{exc.claim}' claim") from None
        except jwt.PyJWTError as exc:
            raise Unauthenticated(f"the token is not valid ({type(exc).__name__})") from None
        if key.endorsements is not None and activity.channel_id not in key.endorsements:
            raise Unauthenticated(f"the signing key is not endorsed for channel '{activity.channel_id}'")
        service_url = claims.get("serviceurl") or claims.get("serviceUrl")
        if service_url != activity.service_url:
            raise Unauthenticated("the token's serviceurl claim does not match the activity's serviceUrl")
        return ClaimsIdentity(claims, True, "Bearer")

    async def _key(self, kid: str) -> _Key | None:
        if self._due(kid):
            async with self._lock:
                if self._due(kid):
                    await self._refresh()
        return self._keys.get(kid)

    def _due(self, kid: str) -> bool:
        """The keys were never read, are a day old, or do not have `kid` and were last read over 5 minutes ago."""
        if self._fetched_at is None:
            return True
        return monotonic() - self._fetched_at > (KEYS_MAX_AGE_S if kid in self._keys else UNKNOWN_KEY_REFRESH_S)

    async def _refresh(self) -> None:
        try:
            session = await self._open()
            async with session.get(self._settings.openid_metadata_url) as response:
                response.raise_for_status()
                metadata = await response.json(content_type=None)
            async with session.get(str(metadata["jwks_uri"])) as response:
                response.raise_for_status()
                document = await response.json(content_type=None)
            keys = {str(k["kid"]): _Key(k) for k in document["keys"] if k.get("kty") == "RSA" and "kid" in k}
        except (aiohttp.ClientError, asyncio.TimeoutError, KeyError, TypeError, ValueError, jwt.PyJWTError) as exc:
            log.warning("could not read the Bot Framework signing keys from %s: %s", self._settings.openid_metadata_url, type(exc).__name__)
            self._fetched_at = monotonic() - UNKNOWN_KEY_REFRESH_S + 10  # try again in 10 s, not on every request
            return
        self._keys = keys
        self._fetched_at = monotonic()

    async def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            bundle = self._settings.ca_bundle
            context = await asyncio.to_thread(ssl.create_default_context, cafile=bundle) if bundle else None
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15),
                                                  connector=aiohttp.TCPConnector(ssl=context) if context else None)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
