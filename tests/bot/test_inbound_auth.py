"""With app credentials configured, only requests carrying a valid Bot Connector token get a turn, and the bot's
replies carry its own token from Entra. The signing keys come from a local OpenID metadata endpoint, in the shape
https://login.botframework.com publishes; the bot's token comes from the sandbox's Entra."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox import Sandbox
from tests.fixtures.sandbox import sandbox_http
from tests.fixtures.teams import AVERY, RILEY, TENANT, message, personal
from tests.sandbox.helpers import new_client

from .test_web import EchoInvokes, serve

ISSUER = "https://api.botframework.com"
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _jwk(key: rsa.RSAPrivateKey, kid: str, endorsements: list[str]) -> dict[str, Any]:
    public = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**public, "kid": kid, "use": "sig", "endorsements": endorsements}


class Channel:
    """The Bot Connector's side: the OpenID metadata and keys it publishes, the replies it receives."""

    def __init__(self) -> None:
        self.url = ""
        self.replies: list[dict[str, Any]] = []
        self.metadata_reads = 0

    async def metadata(self, _request: web.Request) -> web.Response:
        self.metadata_reads += 1
        return web.json_response({"issuer": ISSUER, "jwks_uri": f"{self.url}v1/.well-known/keys",
                                  "id_token_signing_alg_values_supported": ["RS256"]})

    async def keys(self, _request: web.Request) -> web.Response:
        return web.json_response({"keys": [_jwk(KEY, "k1", ["msteams", "emulator"])]})

    async def reply(self, request: web.Request) -> web.Response:
        self.replies.append({"authorization": request.headers.get("Authorization", ""), "body": await request.json()})
        return web.json_response({"id": "act-1"})

    def token(self, app_id: str, service_url: str, *, key: rsa.RSAPrivateKey = KEY, kid: str = "k1", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": app_id, "iat": now, "nbf": now - 5, "exp": now + 3600, "serviceurl": service_url, **claims}
        return jwt.encode({k: v for k, v in body.items() if v is not None}, key, algorithm="RS256", headers={"kid": kid})


def _hs256(claims: dict[str, Any], secret: bytes) -> str:
    """The classic key-confusion forgery: HMAC with the public key as the secret (PyJWT refuses to make one)."""
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
    signing = f"{b64(json.dumps({'alg': 'HS256', 'typ': 'JWT', 'kid': 'k1'}).encode())}.{b64(json.dumps(claims).encode())}"
    return f"{signing}.{b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest())}"


@pytest.fixture
async def channel() -> AsyncIterator[Channel]:
    ch = Channel()
    app = web.Application()
    app.router.add_get("/v1/.well-known/openidconfiguration", ch.metadata)
    app.router.add_get("/v1/.well-known/keys", ch.keys)
    app.router.add_route("*", "/v3/{tail:.*}", ch.reply)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    ch.url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        yield ch
    finally:
        await runner.cleanup()


async def serve_with_auth(sandbox: Sandbox, channel: Channel) -> tuple[str, str, EchoInvokes, Any, str]:
    """A bot with its own app registration in the sandbox, trusting `channel`'s signing keys: (app id, password,
    handler, runner, url)."""
    async with sandbox_http(sandbox) as http:
        app_id, password = await new_client(http, sandbox, roles=[])
    handler = EchoInvokes()
    runner, url = await serve(handler, MicrosoftAppId=app_id, MicrosoftAppPassword=password, MicrosoftAppType="SingleTenant",
                              MicrosoftAppTenantId=sandbox.env["PROVISIONING_TENANT_ID"], BOT_AUTHORITY_HOST=sandbox.env["AZURE_AUTHORITY_HOST"],
                              BOT_OPENID_METADATA_URL=f"{channel.url}v1/.well-known/openidconfiguration",
                              REQUESTS_CA_BUNDLE=sandbox.env["SSL_CERT_FILE"], SETUP_APPROVERS=AVERY.aad, ALLOWED_TENANT_IDS=TENANT)
    return app_id, password, handler, runner, url


async def test_only_valid_bot_connector_tokens_get_a_turn(sandbox: Sandbox, channel: Channel, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    app_id, password, handler, runner, url = await serve_with_auth(sandbox, channel)
    chat = personal(RILEY)
    body = message(chat, RILEY, channel.url, "hello")
    now = int(time.time())
    hs256 = _hs256({"iss": ISSUER, "aud": app_id, "exp": now + 600, "serviceurl": channel.url},
                   KEY.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    unsigned = jwt.encode({"iss": ISSUER, "aud": app_id, "exp": now + 600, "serviceurl": channel.url}, None, algorithm="none")
    refused = {
        "missing": (None, "no Authorization header"),
        "not bearer": (f"Basic {channel.token(app_id, channel.url)}", "not a Bearer token"),
        "garbage": ("Bearer not-a-jwt", "not a JWT"),
        "expired": (f"Bearer {channel.token(app_id, channel.url, iat=now - 7200, nbf=now - 7200, exp=now - 900)}", "expired"),
        "wrong audience": (f"Bearer {channel.token('another-app', channel.url)}", "another app"),
        "wrong issuer": (f"Bearer {channel.token(app_id, channel.url, iss='https://sts.windows.net/evil/')}", "not issued by the Bot Framework"),
        "unsigned": (f"Bearer {unsigned}", "RS256"),
        "hs256 with the public key": (f"Bearer {hs256}", "RS256"),
        "signed by another key": (f"Bearer {channel.token(app_id, channel.url, key=OTHER_KEY)}", "signature"),
        "unknown key id": (f"Bearer {channel.token(app_id, channel.url, kid='k9')}", "does not publish"),
        "other serviceUrl": (f"Bearer {channel.token(app_id, 'http://127.0.0.1:9/')}", "serviceurl"),
        "no expiry": (f"Bearer {channel.token(app_id, channel.url, exp=None)}", "exp"),
    }
    try:
        async with aiohttp.ClientSession() as client:
            for name, (header, reason) in refused.items():
                headers = {"Authorization": header} if header else {}
                async with client.post(f"{url}/api/messages", json=body, headers=headers) as r:
                    answer = await r.json()
                    assert r.status == 401, (name, r.status, answer)
                    assert reason in answer["error"], (name, answer)
            webchat = dict(body, channelId="webchat")
            async with client.post(f"{url}/api/messages", json=webchat, headers={"Authorization": f"Bearer {channel.token(app_id, channel.url)}"}) as r:
                assert r.status == 401 and "endorsed" in (await r.json())["error"]
            assert handler.turns == 0 and channel.replies == []

            good = channel.token(app_id, channel.url)
            async with client.post(f"{url}/api/messages", json=body, headers={"Authorization": f"Bearer {good}"}) as r:
                assert r.status == 201, await r.text()
    finally:
        await runner.cleanup()
    assert handler.turns == 1 and len(channel.replies) == 1
    assert channel.metadata_reads <= 2  # cached (one more read for the unknown key id)
    scheme, _, outbound = channel.replies[0]["authorization"].partition(" ")
    assert scheme == "Bearer"
    async with sandbox_http(sandbox) as http:
        tenant = sandbox.env["PROVISIONING_TENANT_ID"]
        keys = (await http.get(f"{sandbox.env['AZURE_AUTHORITY_HOST']}/{tenant}/discovery/v2.0/keys")).json()["keys"]
    signer = jwt.PyJWK(next(k for k in keys if k["kid"] == jwt.get_unverified_header(outbound)["kid"])).key
    claims = jwt.decode(outbound, signer, algorithms=["RS256"], audience="https://api.botframework.com")
    assert claims["appid"] == app_id or claims.get("azp") == app_id
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert good not in logged and outbound not in logged and password not in logged


async def test_a_host_that_booted_a_minute_ago_reads_the_keys_on_the_first_token(sandbox: Sandbox, channel: Channel, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found on a freshly booted machine: the signing keys were first read only once the monotonic clock (which
    starts at boot) passed five minutes, so a bot on a new instance refused every Bot Connector token until then."""
    from bot import inbound_auth

    booted = time.monotonic()
    monkeypatch.setattr(inbound_auth, "monotonic", lambda: 60.0 + time.monotonic() - booted)
    app_id, password, handler, runner, url = await serve_with_auth(sandbox, channel)
    try:
        async with aiohttp.ClientSession() as client:
            body = message(personal(RILEY), RILEY, channel.url, "hello")
            async with client.post(f"{url}/api/messages", json=body, headers={"Authorization": f"Bearer {channel.token(app_id, channel.url)}"}) as r:
                assert r.status == 201, await r.text()
    finally:
        await runner.cleanup()
    assert handler.turns == 1 and channel.metadata_reads == 1
