"""The bot's configuration, from the environment or `.env`."""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

from provisioning.config import environment

from .errors import ConfigError

log = logging.getLogger(__name__)
APP_TYPES = ("SingleTenant", "MultiTenant", "UserAssignedMSI")
# Where the Bot Connector's signing keys are published, and who issues its tokens (public cloud)
OPENID_METADATA_URL = "https://login.botframework.com/v1/.well-known/openidconfiguration"
TOKEN_ISSUER = "https://api.botframework.com"


def _ids(raw: str) -> frozenset[str]:
    return frozenset(x.strip().lower() for x in raw.split(",") if x.strip())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url(e: Mapping[str, str], name: str, default: str) -> str:
    """An https URL (http only for a loopback host, i.e. local tests), without a trailing slash."""
    raw = e.get(name, "").strip() or default
    parts = urlsplit(raw)
    if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and is_loopback(parts.hostname))):
        raise ConfigError(name, f"{name} must be an https URL, got '{raw}'.")
    return raw.rstrip("/")


@dataclass(frozen=True)
class BotSettings:
    app_id: str = ""
    app_password: str = field(default="", repr=False)
    app_type: str = "SingleTenant"
    app_tenant_id: str = ""
    host: str = "127.0.0.1"
    port: int = 3978
    setup_requesters: frozenset[str] = frozenset()
    setup_approvers: frozenset[str] = frozenset()
    allowed_tenant_ids: frozenset[str] = frozenset()
    require_second_approver: bool = False
    allow_anyone: bool = False  # ALLOW_ANYONE=true: the operator opened the bot to anyone it answers
    max_body_bytes: int = 256 * 1024
    authority_host: str = "https://login.microsoftonline.com"
    openid_metadata_url: str = OPENID_METADATA_URL
    token_issuer: str = TOKEN_ISSUER
    ca_bundle: str | None = None

    @property
    def auth_enabled(self) -> bool:
        return bool(self.app_id)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, dotenv: Path | None = Path(".env")) -> "BotSettings":
        e = environment(env, dotenv)
        app_id = e.get("MicrosoftAppId", "").strip()
        password = e.get("MicrosoftAppPassword", "").strip()
        app_type = e.get("MicrosoftAppType", "").strip() or "SingleTenant"
        tenant = e.get("MicrosoftAppTenantId", "").strip()
        host = e.get("HOST", "").strip() or "127.0.0.1"
        raw_port = e.get("PORT", "").strip() or "3978"
        if not raw_port.isdigit() or not 0 <= int(raw_port) <= 65535:
            raise ConfigError("PORT", f"PORT must be a port number, got '{raw_port}'.")
        match = [t for t in APP_TYPES if t.lower() == app_type.lower()]
        if not match:
            raise ConfigError("MicrosoftAppType", f"MicrosoftAppType must be one of {', '.join(APP_TYPES)}, got '{app_type}'.")
        app_type = match[0]
        if not app_id:
            if not is_loopback(host):
                raise ConfigError("MicrosoftAppId",
                                  f"MicrosoftAppId is not set, so inbound authentication would be off, and HOST is {host}. "
                                  "Set MicrosoftAppId, MicrosoftAppPassword and MicrosoftAppTenantId, or bind HOST to 127.0.0.1 for local testing.")
        elif app_type == "SingleTenant":
            missing = [n for n, v in (("MicrosoftAppPassword", password), ("MicrosoftAppTenantId", tenant)) if not v]
            if missing:
                raise ConfigError(missing[0], f"A SingleTenant bot needs {' and '.join(missing)}.")
        elif app_type == "UserAssignedMSI" and not tenant:
            raise ConfigError("MicrosoftAppTenantId", "A UserAssignedMSI bot needs MicrosoftAppTenantId.")
        elif app_type == "MultiTenant":
            log.warning("MicrosoftAppType=MultiTenant: new multi-tenant bot registrations can no longer be created; prefer SingleTenant.")
        allow_anyone = _flag(e, "ALLOW_ANYONE", False)
        # Reachable from Teams: a second person approves by default (only without an app id, on loopback, one person may do it all)
        second = _flag(e, "REQUIRE_SECOND_APPROVER", bool(app_id))
        settings = cls(
            app_id=app_id, app_password=password, app_type=app_type, app_tenant_id=tenant, host=host, port=int(raw_port),
            setup_requesters=_ids(e.get("SETUP_REQUESTERS", "")), setup_approvers=_ids(e.get("SETUP_APPROVERS", "")),
            allowed_tenant_ids=_ids(e.get("ALLOWED_TENANT_IDS", "")), require_second_approver=second, allow_anyone=allow_anyone,
            authority_host=_url(e, "BOT_AUTHORITY_HOST", "https://login.microsoftonline.com"),
            openid_metadata_url=_url(e, "BOT_OPENID_METADATA_URL", OPENID_METADATA_URL),
            token_issuer=e.get("BOT_TOKEN_ISSUER", "").strip() or TOKEN_ISSUER,
            ca_bundle=(e.get("REQUESTS_CA_BUNDLE", "") or e.get("SSL_CERT_FILE", "")).strip() or None,
        )
        if app_id and not allow_anyone:
            missing = [n for n, v in (("SETUP_APPROVERS", settings.setup_approvers), ("ALLOWED_TENANT_IDS", settings.allowed_tenant_ids)) if not v]
            if missing:
                raise ConfigError(missing[0],
                                  f"The bot is reachable from Teams (MicrosoftAppId is set), so it is closed by default, and {' and '.join(missing)} "
                                  f"{'is' if len(missing) == 1 else 'are'} not set. Set SETUP_APPROVERS to the Entra object ids of who may approve "
                                  "setups and ALLOWED_TENANT_IDS to the tenant ids the bot answers (comma-separated), or set ALLOW_ANYONE=true "
                                  "to let anyone the bot answers request and approve (plan cards then say so).")
        if allow_anyone:
            log.warning("ALLOW_ANYONE=true: anyone %s may request and approve setups.",
                        "in any tenant" if not settings.allowed_tenant_ids else "in the allowed tenants")
        elif not settings.setup_approvers:
            log.warning("SETUP_APPROVERS is empty: anyone who can talk to this local bot may approve (no MicrosoftAppId: loopback only).")
        return settings


def _flag(e: Mapping[str, str], name: str, default: bool) -> bool:
    raw = e.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        raise ConfigError(name, f"{name} must be true or false, got '{raw}'.")
    return raw in ("true", "1", "yes")
