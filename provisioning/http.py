"""One retrying HTTP layer for Graph and Dataverse: tokens, retries, replication delay, typed errors.

Policy (microsoft-apis.md §2): honour Retry-After on 429/503; exponential backoff with full jitter on
408/425/500/502/503/504; refresh the token once on 401; Dataverse publish bursts (a bare 401, or a 400
wrapping a 429) retried a few times; 404 Request_ResourceNotFound and the service-principal
NoBackingApplicationObject 400 are replication delay when the object was created recently; a
non-idempotent request is never replayed after an ambiguous failure (timeout, reset, 5xx).
"""

from __future__ import annotations

import asyncio
import contextvars
import email.utils
import logging
import random
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable, Literal, Mapping

import httpx

from .auth import TokenProvider
from .errors import (
    AuthenticationError,
    BadRequestError,
    MicrosoftApiError,
    NotFoundError,
    PermissionDeniedError,
    ServiceUnavailableError,
    ThrottledError,
)

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
SAFE_TO_REPLAY = frozenset({429})  # Microsoft did not act on a throttled request


@dataclass(frozen=True)
class ApiResponse:
    status: int
    body: Any
    headers: Mapping[str, str]
    request_id: str


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 6
    max_throttled_attempts: int = 12  # 429s: Microsoft asks clients to keep honouring Retry-After
    base_delay: float = 1.0
    max_delay: float = 32.0
    replication_window: float = 300.0
    replication_base_delay: float = 2.0
    publish_burst_retries: int = 5
    publish_burst_base_delay: float = 3.0
    max_retry_after: float = 120.0


OnRetry = Callable[[str, float], "Awaitable[None] | None"]
# Set by the worker for the task running a job: awaited before every Microsoft write made on the job's behalf, it
# raises once the job was cancelled or its lease was taken over, so no write starts after that.
write_guard: contextvars.ContextVar[Callable[[], Awaitable[None]] | None] = contextvars.ContextVar("write_guard", default=None)
OnResponse = Callable[[str, str, int, str], None]


@dataclass
class _Attempt:
    number: int = 0
    refreshed: bool = False
    replication: int = 0
    bursts: int = 0
    throttled: int = 0
    started: float = field(default_factory=time.monotonic)


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class MicrosoftHttp:
    def __init__(
        self,
        *,
        service: Literal["graph", "dataverse"],
        base_url: str,
        resource: str,
        tokens: TokenProvider,
        client: httpx.AsyncClient,
        retry: RetryPolicy = RetryPolicy(),
        on_retry: OnRetry | None = None,
        on_response: OnResponse | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.service = service
        self.base_url = base_url.rstrip("/")
        self.resource = resource
        self._tokens = tokens
        self._client = client
        self._retry = retry
        self.on_retry = on_retry
        self.on_response = on_response
        self._sleep = sleep

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        step: str | None = None,
        created_at: datetime | None = None,
        on_retry: OnRetry | None = None,
    ) -> ApiResponse:
        url = f"{self.base_url}/{path.lstrip('/')}"
        attempt = _Attempt()
        notify = on_retry or self.on_retry
        guard = write_guard.get() if method != "GET" else None
        while True:
            attempt.number += 1
            if guard is not None:
                await guard()
            token = await self._tokens.token(self.resource)
            send_headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
            if self.service == "dataverse":
                send_headers |= {"OData-MaxVersion": "4.0", "OData-Version": "4.0"}
            send_headers |= dict(headers or {})
            try:
                response = await self._client.request(method, url, json=json, params=params, headers=send_headers)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                ambiguous = not isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
                if (ambiguous and not idempotent) or attempt.number >= self._retry.max_attempts:
                    raise ServiceUnavailableError(
                        f"{self._name()} could not be reached ({type(exc).__name__}).",
                        status=0, service=self.service, step=step,
                        action="The request may or may not have been carried out; the job will check before trying again." if ambiguous and not idempotent
                        else "Check the network and the endpoint configuration, then retry.",
                    ) from None
                await self._wait(notify, f"{self._name()} could not be reached ({type(exc).__name__})", self._backoff(attempt.number))
                continue
            result = self._result(response)
            if self.on_response:
                self.on_response(method, response.request.url.path, response.status_code, result.request_id)
            if response.status_code < 400:
                return result
            decision = self._decide(response, result, attempt, idempotent, created_at)
            if decision is None:
                raise self._error(response, result, step, attempt)
            reason, delay = decision
            if reason == "refresh":
                await self._tokens.token(self.resource, force_refresh=True)
                continue
            await self._wait(notify, reason, delay)

    def _name(self) -> str:
        return "Microsoft Graph" if self.service == "graph" else "Dataverse"

    def _backoff(self, n: int, base: float | None = None) -> float:
        cap = min(self._retry.max_delay, (base if base is not None else self._retry.base_delay) * 2 ** (n - 1))
        return random.uniform(cap / 2, cap)

    async def _wait(self, notify: OnRetry | None, reason: str, delay: float) -> None:
        log.info("%s; retrying in %.1f s", reason, delay)
        if notify is not None:
            outcome = notify(f"{reason}; trying again in {delay:.0f} s", delay)
            if asyncio.iscoroutine(outcome):
                await outcome
        await self._sleep(delay)

    def _decide(
        self, response: httpx.Response, result: ApiResponse, attempt: _Attempt, idempotent: bool, created_at: datetime | None
    ) -> tuple[str, float] | None:
        status = response.status_code
        code, message = _code_and_message(result.body)
        name = self._name()
        if status == 401:
            if not attempt.refreshed:
                attempt.refreshed = True
                return "refresh", 0.0
            if self.service == "dataverse" and attempt.bursts < self._retry.publish_burst_retries:
                attempt.bursts += 1
                return f"{name} answered 401 during a burst", self._backoff(attempt.bursts, self._retry.publish_burst_base_delay)
            return None
        if self.service == "dataverse" and status == 400 and ("429" in message or "TooManyRequests" in message):
            if attempt.bursts < self._retry.publish_burst_retries:
                attempt.bursts += 1
                return f"{name} is throttling (a 400 wrapping a 429)", self._backoff(attempt.bursts, self._retry.publish_burst_base_delay)
            return None
        recent = created_at is not None and (datetime.now(timezone.utc) - created_at).total_seconds() < self._retry.replication_window
        replication = (status == 404 and code in ("Request_ResourceNotFound", "0x80040217")) or (
            status == 400 and ("NoBackingApplicationObject" in str(result.body) or "does not reference a valid application object" in message)
        )
        if replication and recent and self.service == "graph":
            attempt.replication += 1
            delay = min(32.0, self._retry.replication_base_delay * 2 ** (attempt.replication - 1))
            return f"{name} has not replicated the new object yet ({status} {code})", random.uniform(delay * 0.8, delay)
        if status in RETRY_STATUSES:
            if status == 429:
                attempt.throttled += 1
                if attempt.throttled >= self._retry.max_throttled_attempts:
                    return None
            elif attempt.number - attempt.throttled >= self._retry.max_attempts:
                return None
            if not idempotent and status not in SAFE_TO_REPLAY and status != 503:
                return None
            after = retry_after_seconds(response.headers.get("Retry-After")) if status in (429, 503) else None
            if after is not None:
                after = min(after, self._retry.max_retry_after)
                what = "is throttling requests (429)" if status == 429 else "is temporarily unavailable (503)"
                return f"{name} {what}; waiting {after:g} s as Retry-After asks", after
            return f"{name} answered {status}", self._backoff(attempt.number)
        return None

    def _result(self, response: httpx.Response) -> ApiResponse:
        try:
            body: Any = response.json() if response.content else None
        except ValueError:
            body = response.text
        request_id = (
            response.headers.get("request-id")
            or response.headers.get("x-ms-service-request-id")
            or response.headers.get("client-request-id")
            or ""
        )
        if not request_id and isinstance(body, dict):
            inner = (body.get("error") or {}).get("innerError") or {}
            request_id = str(inner.get("request-id", ""))
        return ApiResponse(response.status_code, body, response.headers, request_id)

    def _error(self, response: httpx.Response, result: ApiResponse, step: str | None, attempt: _Attempt) -> MicrosoftApiError:
        status = response.status_code
        code, message = _code_and_message(result.body)
        kw: dict[str, Any] = dict(status=status, code=code, ms_message=message, request_id=result.request_id, service=self.service, step=step)
        name = self._name()
        if status == 401 and attempt.bursts:
            return ThrottledError(f"{name} kept answering 401 to a burst of requests, as it does when it throttles.",
                                  action="Wait a few minutes, then Retry.", **kw)
        if status == 401:
            return AuthenticationError(f"{name} did not accept the provisioning identity's token.", action="Check the provisioning identity's credentials and tenant.", **kw)
        if status == 403:
            return PermissionDeniedError(f"{name} refused: the provisioning identity lacks a permission.", action=_permission_action(self.service, code, message), **kw)
        if status == 404:
            return NotFoundError(f"{name} could not find what was asked for.", action="Check the agent and environment; if it was just created, retry in a few minutes.", **kw)
        if status == 429 or (status == 400 and ("TooManyRequests" in message or "(429)" in message)):
            return ThrottledError(f"{name} kept throttling the requests.", retry_after=retry_after_seconds(response.headers.get("Retry-After")),
                                  action="Wait a few minutes, then retry.", **kw)
        if status >= 500 or status == 408:
            return ServiceUnavailableError(f"{name} is having trouble ({status}).", action="Retry in a few minutes; if it persists, check the Microsoft 365 service health page.", **kw)
        if code == "CredentialTypeNotAllowedAsPerAppPolicy":
            return BadRequestError("Your tenant's app management policy does not allow client secrets on app registrations.",
                                   action="Start the setup again and choose the federated credential (no secret), or ask an Entra "
                                          "administrator to exempt this app from the policy.", **kw)
        if code == "CredentialInvalidLifetimeAsPerAppPolicy":
            return BadRequestError("Your tenant's app management policy does not allow a client secret that long.",
                                   action="Choose a shorter secret lifetime (the tenant's policy sets the maximum) and retry.", **kw)
        return BadRequestError(f"{name} rejected the request ({status}).", action="Check the values in the setup request.", **kw)


def _code_and_message(body: Any) -> tuple[str, str]:
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return str(err.get("code", "")), str(err.get("message", ""))
    return "", ""


def _permission_action(service: str, code: str, message: str) -> str:
    if service == "graph":
        return ("Grant the provisioning app registration the Microsoft Graph application permission "
                "Application.ReadWrite.OwnedBy (or Application.ReadWrite.All) in Entra admin center → App registrations → "
                "API permissions, then select 'Grant admin consent'. With OwnedBy it can only change app registrations it created.")
    if code == "0x80072560":
        return ("Add the provisioning app as an application user in that environment: Power Platform admin center → "
                "Environments → your environment → Settings → Users + permissions → Application users → New app user.")
    if code == "0x80040220":
        missing = message.split(" is missing ")[-1].split(" privilege")[0] if " is missing " in message else "a privilege"
        return (f"Give the provisioning app's application user a security role with {missing} (for example System Administrator) "
                "in Power Platform admin center → Environments → Settings → Application users → Edit security roles.")
    return "Give the provisioning app's application user a security role that can read and update bots."
