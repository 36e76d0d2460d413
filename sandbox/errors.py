"""Microsoft's error bodies, as each service really shapes them."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

from aiohttp import web

from .clock import CLOCK

REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)


def _now_graph(request: web.Request) -> str:
    """innerError.date: UTC without an offset ("2021-04-20T17:22:30"), by the sandbox's clock."""
    clock = request.app.get(CLOCK)
    now = clock.utcnow() if clock is not None else datetime.now(timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S")


def graph_error(
    request: web.Request,
    status: int,
    code: str,
    message: str,
    *,
    details: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    """Graph's OData error: {"error":{"code","message","innerError":{"date","request-id","client-request-id"}}}."""
    request_id = request.get(REQUEST_ID) or str(uuid.uuid4())
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "innerError": {
            "date": _now_graph(request),
            "request-id": request_id,
            "client-request-id": request.headers.get("client-request-id", request_id),
        },
    }
    if details:
        error["details"] = details
    return web.Response(
        status=status,
        text=json.dumps({"error": error}),
        content_type="application/json",
        headers=headers or {},
    )


def dataverse_error(status: int, code: str, message: str, *, headers: dict[str, str] | None = None) -> web.Response:
    """Dataverse's error: {"error":{"code":"0x…","message":…}}."""
    return web.Response(
        status=status,
        text=json.dumps({"error": {"code": code, "message": message}}),
        content_type="application/json",
        headers=headers or {},
    )


def aad_error(status: int, error: str, aadsts: int, description: str, *, tenant: str = "") -> web.Response:
    """The Entra token endpoint's OAuth error body with an AADSTS code."""
    trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")
    body = {
        "error": error,
        "error_description": f"AADSTS{aadsts}: {description} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {stamp}",
        "error_codes": [aadsts],
        "timestamp": stamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": f"https://login.microsoftonline.com/error?code={aadsts}",
    }
    return web.Response(status=status, text=json.dumps(body), content_type="application/json")
