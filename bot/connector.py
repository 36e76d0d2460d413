"""Replies to the Bot Connector on one pooled aiohttp session.

botbuilder's CloudAdapter builds a msrest `ConnectorClient` for every turn and posts each reply through
`requests` on a thread pool, on a new TCP connection that closes only when garbage-collected. Here the adapter
gets a connector factory that hands out one small client per (service URL, audience), all posting on one
keep-alive session, with the bot's token (if it has an app id) from `BotTokens`.

The clients implement the four conversation operations the adapter uses (send, reply, update, delete) with the
Bot Connector REST API's paths and bodies. 429 and 5xx answers and lost connections are tried again a few times
(after Retry-After when the connector sends one, capped at 10 s), so a throttled Teams does not fail a turn. What
still fails raises `ConnectorError` with the status, Retry-After and the connector's error code, so callers can
tell "try again later" from "this will never work".
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Protocol
from urllib.parse import quote

import aiohttp
from botbuilder.schema import Activity, ResourceResponse
from botframework.connector.auth import ConnectorFactory

from .errors import ConnectorError
from .wire import to_wire

log = logging.getLogger(__name__)
TIMEOUT = aiohttp.ClientTimeout(total=30, connect=10)
ATTEMPTS = 4  # a throttled (429) or failing (5xx) post is tried again, as the Bot Connector asks, a few times
MAX_RETRY_AFTER_S = 10.0


class TokenSource(Protocol):
    async def token(self, audience: str) -> str | None:
        """A bearer token for calls to `audience`, or None when the bot has no app id (local testing only)."""


class Conversations:
    """The `conversations` operations of the Bot Connector REST API that the adapter calls."""

    def __init__(self, pool: "ConnectorPool", service_url: str, audience: str) -> None:
        self._pool = pool
        self._base = service_url.rstrip("/") + "/v3/conversations/"
        self._audience = audience

    async def send_to_conversation(self, conversation_id: str, activity: Activity) -> ResourceResponse:
        return await self._call("POST", f"{quote(conversation_id, safe='')}/activities", activity)

    async def reply_to_activity(self, conversation_id: str, activity_id: str, activity: Activity) -> ResourceResponse:
        return await self._call("POST", f"{quote(conversation_id, safe='')}/activities/{quote(activity_id, safe='')}", activity)

    async def update_activity(self, conversation_id: str, activity_id: str, activity: Activity) -> ResourceResponse:
        return await self._call("PUT", f"{quote(conversation_id, safe='')}/activities/{quote(activity_id, safe='')}", activity)

    async def delete_activity(self, conversation_id: str, activity_id: str) -> None:
        await self._call("DELETE", f"{quote(conversation_id, safe='')}/activities/{quote(activity_id, safe='')}", None)

    async def _call(self, method: str, path: str, activity: Activity | None) -> ResourceResponse:
        data = json.dumps(to_wire(activity)).encode() if activity is not None else None
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return await self._once(method, path, data)
            except ConnectorError as exc:
                if attempt == ATTEMPTS or not exc.transient or exc.status == 0:
                    raise
                delay = min(MAX_RETRY_AFTER_S, exc.retry_after) if exc.retry_after is not None else _backoff(attempt)
                log.info("the Bot Connector answered %d to %s; trying again in %.1f s", exc.status, method, delay)
            except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as exc:
                if attempt == ATTEMPTS:
                    raise ConnectorError(f"Could not reach the Bot Connector for {method}: {type(exc).__name__}", status=503) from None
                delay = _backoff(attempt)
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _once(self, method: str, path: str, data: bytes | None) -> ResourceResponse:
        headers = {"Content-Type": "application/json; charset=utf-8"}
        token = await self._pool.tokens.token(self._audience)
        if token:
            headers["Authorization"] = f"Bearer {token}"
        session = self._pool.session()
        async with session.request(method, self._base + path, data=data, headers=headers) as response:
            body = await response.read()
            if response.status >= 300:
                raise ConnectorError.from_response(method, response.status, response.headers, body)
        try:
            answer = json.loads(body) if body else {}
        except ValueError:
            answer = {}
        return ResourceResponse(id=answer.get("id")) if isinstance(answer, dict) else ResourceResponse()


def _backoff(attempt: int) -> float:
    return float(min(4.0, 0.2 * 2.0 ** (attempt - 1)) * random.uniform(0.5, 1.0))


class Client:
    """Stands in for msrest's ConnectorClient inside a turn: the adapter only uses `.conversations`."""

    def __init__(self, pool: "ConnectorPool", service_url: str, audience: str) -> None:
        self.conversations = Conversations(pool, service_url, audience)


class ConnectorPool(ConnectorFactory):  # type: ignore[misc]
    """The connector factory for every turn and proactive message: one session, one client per URL and audience."""

    def __init__(self, tokens: TokenSource, default_audience: str) -> None:
        self.tokens = tokens
        self.default_audience = default_audience
        self._session: aiohttp.ClientSession | None = None
        self._clients: dict[tuple[str, str], Client] = {}

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # keep-alive connections, reused across turns; the limit per host bounds sockets under load
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, limit_per_host=32, keepalive_timeout=30), timeout=TIMEOUT)
        return self._session

    async def create(self, service_url: str, audience: str | None = None) -> Client:
        key = (service_url, audience or self.default_audience)
        client = self._clients.get(key)
        if client is None:
            if len(self._clients) > 1000:  # service URLs are per region; many means something odd: do not grow forever
                self._clients.clear()
            client = self._clients[key] = Client(self, *key)
        return client

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

