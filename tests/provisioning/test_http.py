"""The retry policy, answered by httpx.MockTransport with Microsoft's real statuses, headers and bodies."""

from __future__ import annotations

from datetime import datetime, timezone

import httpx
import pytest

from provisioning.errors import BadRequestError, PermissionDeniedError, ServiceUnavailableError, ThrottledError
from provisioning.http import MicrosoftHttp, RetryPolicy, retry_after_seconds

POLICY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, replication_base_delay=0.01, publish_burst_base_delay=0.01)


class Tokens:
    def __init__(self) -> None:
        self.refreshes = 0

    async def token(self, resource: str, *, force_refresh: bool = False) -> str:
        self.refreshes += force_refresh
        return f"token-{self.refreshes}"


def graph_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, "innerError": {"request-id": "rid-1", "date": "2026-11-24T00:00:00"}}},
                          headers={"request-id": "rid-1", **(headers or {})})


def make(answers: list[httpx.Response], service: str = "graph") -> tuple[MicrosoftHttp, list[httpx.Request], list[float], Tokens]:
    calls: list[httpx.Request] = []
    waits: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return answers.pop(0)

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    tokens = Tokens()
    http = MicrosoftHttp(service=service, base_url="https://graph.example", resource="https://graph.microsoft.com",  # type: ignore[arg-type]
                         tokens=tokens, client=httpx.AsyncClient(transport=httpx.MockTransport(handler)), retry=POLICY, sleep=sleep)  # type: ignore[arg-type]
    return http, calls, waits, tokens


async def test_retry_after_is_honoured_on_429() -> None:
    http, calls, waits, _ = make([graph_error(429, "TooManyRequests", "Too many requests.", {"Retry-After": "7"}), httpx.Response(200, json={"ok": 1})])
    reasons: list[str] = []
    r = await http.request("GET", "v1.0/applications", on_retry=lambda reason, delay: reasons.append(reason))  # type: ignore[arg-type,func-returns-value]
    assert r.body == {"ok": 1} and waits == [7.0] and len(calls) == 2
    assert "Retry-After" in reasons[0]


async def test_token_is_refreshed_once_on_401() -> None:
    http, calls, _, tokens = make([httpx.Response(401), httpx.Response(200, json={})])
    await http.request("GET", "v1.0/applications")
    assert tokens.refreshes == 1 and calls[1].headers["Authorization"] == "Bearer token-1"


async def test_non_idempotent_request_is_not_replayed_after_a_500() -> None:
    http, calls, _, _ = make([graph_error(500, "generalException", "boom")])
    with pytest.raises(ServiceUnavailableError) as info:
        await http.request("POST", "v1.0/applications/x/addPassword", json={}, idempotent=False)
    assert len(calls) == 1 and info.value.request_id == "rid-1"


async def test_replication_404_is_retried_only_for_recent_objects() -> None:
    missing = lambda: graph_error(404, "Request_ResourceNotFound", "Resource 'x' does not exist or one of its queried reference-property objects are not present.")  # noqa: E731
    http, calls, _, _ = make([missing(), missing(), httpx.Response(200, json={"id": "x"})])
    r = await http.request("GET", "v1.0/applications/x", created_at=datetime.now(timezone.utc))
    assert r.status == 200 and len(calls) == 3
    http, calls, _, _ = make([missing()])
    with pytest.raises(Exception) as info:
        await http.request("GET", "v1.0/applications/x")
    assert type(info.value).__name__ == "NotFoundError" and len(calls) == 1


async def test_errors_say_what_to_do() -> None:
    http, _, _, _ = make([graph_error(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")])
    with pytest.raises(PermissionDeniedError) as denied:
        await http.request("POST", "v1.0/applications", json={})
    assert "Application.ReadWrite.OwnedBy" in denied.value.action and "Grant admin consent" in denied.value.action
    assert "request id rid-1" in denied.value.user_message()
    http, _, _, _ = make([graph_error(400, "CredentialInvalidLifetimeAsPerAppPolicy", "Credential lifetime exceeds the max value allowed as per assigned policy.")])
    with pytest.raises(BadRequestError) as policy:
        await http.request("POST", "v1.0/applications/x/addPassword", json={}, idempotent=False)
    assert "shorter secret lifetime" in policy.value.action
    dv = httpx.Response(403, json={"error": {"code": "0x80072560", "message": "The user is not a member of the organization."}})
    http, _, _, _ = make([dv], service="dataverse")
    with pytest.raises(PermissionDeniedError) as member:
        await http.request("GET", "api/data/v9.2/WhoAmI")
    assert "Application users" in member.value.action


async def test_dataverse_burst_400_wrapping_429_is_retried_then_reported_as_throttling() -> None:
    burst = lambda: httpx.Response(400, json={"error": {"code": "0x80040216", "message": "Request failed with status TooManyRequests (429)."}})  # noqa: E731
    http, calls, _, _ = make([burst() for _ in range(6)], service="dataverse")
    with pytest.raises(ThrottledError):
        await http.request("POST", "api/data/v9.2/bots(x)/Microsoft.Dynamics.CRM.PvaPublish", json={})
    assert len(calls) == 6


def test_retry_after_formats() -> None:
    assert retry_after_seconds("3") == 3.0 and retry_after_seconds(None) is None and retry_after_seconds("soon") is None
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
