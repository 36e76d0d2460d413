"""Checks on a setup request that need no network: one clear message per field."""

from __future__ import annotations

from urllib.parse import urlsplit

from .errors import FieldError
from .models import SIGN_IN_AUDIENCES, SetupRequest

MAX_DISPLAY_NAME = 120  # Entra's documented limit (Graph metadata says 256; Teams Toolkit enforces 120)
MAX_REDIRECT_URI = 256
MAX_SECRET_DAYS = 730  # Graph's default and the portal's longest choice
CUSTOMER_SERVICE_MAX_NAME = 30
_FORBIDDEN = set("!$'(),;")


def redirect_uri_problem(uri: str) -> str | None:
    if not uri:
        return "is empty"
    if len(uri) > MAX_REDIRECT_URI:
        return f"is longer than {MAX_REDIRECT_URI} characters"
    bad = sorted(_FORBIDDEN & set(uri))
    if bad:
        return f"contains characters Entra does not allow: {' '.join(bad)}"
    if "*" in uri:
        return "contains a wildcard, which Entra does not allow here"
    parts = urlsplit(uri)
    if parts.scheme == "https" and parts.netloc:
        return None
    if parts.scheme == "http" and parts.hostname in ("localhost", "127.0.0.1"):
        return None
    return "must start with https:// (http is allowed only for localhost)"


def validate_request(request: SetupRequest, environments: tuple[str, ...]) -> list[FieldError]:
    errors: list[FieldError] = []
    name = request.app_display_name.strip()
    if not name:
        errors.append(FieldError("app_display_name", "Enter a name for the app registration."))
    elif len(name) > MAX_DISPLAY_NAME:
        errors.append(FieldError("app_display_name", f"Use at most {MAX_DISPLAY_NAME} characters (this has {len(name)})."))
    if request.sign_in_audience not in SIGN_IN_AUDIENCES:
        errors.append(FieldError("sign_in_audience", f"Choose one of: {', '.join(SIGN_IN_AUDIENCES)}."))
    if not request.redirect_uris:
        errors.append(FieldError("redirect_uris", "Enter at least one redirect URI, e.g. https://token.botframework.com/.auth/web/redirect."))
    seen: set[str] = set()
    for uri in request.redirect_uris:
        problem = redirect_uri_problem(uri)
        if problem:
            errors.append(FieldError("redirect_uris", f"'{uri[:80]}' {problem}."))
            break
        if uri in seen:
            errors.append(FieldError("redirect_uris", f"'{uri}' is listed twice; list each redirect URI once."))
            break
        seen.add(uri)
    if len(request.redirect_uris) > 256:
        errors.append(FieldError("redirect_uris", "Entra allows at most 256 redirect URIs."))
    days = request.secret_lifetime_days
    if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= MAX_SECRET_DAYS:
        errors.append(FieldError("secret_lifetime_days", f"Choose a whole number of days from 1 to {MAX_SECRET_DAYS}."))
    agent = request.agent
    if agent.environment_url.rstrip("/") not in environments:
        errors.append(FieldError("agent", f"The environment {agent.environment_url} is not configured; DATAVERSE_URL lists {', '.join(environments)}."))
    if not (agent.schema_name or agent.bot_id):
        errors.append(FieldError("agent", "Choose an agent (its schema name or bot id)."))
    return errors


def validate_agent_name(request: SetupRequest, agent_name: str) -> list[FieldError]:
    if request.connect_customer_service and len(agent_name) > CUSTOMER_SERVICE_MAX_NAME:
        return [FieldError(
            "connect_customer_service",
            f"The agent '{agent_name}' has {len(agent_name)} characters; agents with names over {CUSTOMER_SERVICE_MAX_NAME} "
            "characters cannot connect to Customer Service. Rename it in Copilot Studio, or untick this option.",
        )]
    return []
