"""The emulated Copilot Studio's own state for an agent: its authentication settings as the Settings →
Security → Authentication page shows them, and the federated credential issuer and value it shows for
"Microsoft Entra ID V2 with federated credentials" (PPD `configuration-authentication-azure-ad`;
microsoft-apis.md §4, §6).

The format of Copilot Studio's issuer and value is not documented [unc]. The sandbox shows the issuer of
its own Entra authority (`{authority}/{tenant}/v2.0`) and a value shaped like Entra's `/eid1/c/pub/t/…/a/…/…`
subject identifiers whose last segment is an HMAC (keyed by a secret of this sandbox) of the environment and
bot id, so a client cannot derive it and must copy what Copilot Studio shows. Once shown, the pair is kept,
so a re-run shows the same pair for the same agent and tenant.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from typing import Any

from .dataverse import AUTH_MODE_NAMES
from .store import Store

COPILOT_STUDIO_APP_ID = "96ff4394-9197-43aa-b393-6a41652e21f8"  # microsoft-apis.md §1 (botmanagement)
SECRET_PROVIDER = "Microsoft Entra ID V2 with client secrets"
FEDERATED_PROVIDER = "Microsoft Entra ID V2 with federated credentials"
SECRET, FEDERATED = "secret", "federated"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def authentication_view(bot: dict[str, Any]) -> dict[str, Any]:
    mode = int(bot["authenticationmode"])
    custom = mode == 3
    kind = bot.get("_auth_kind") if custom else None
    federated = bot.get("_auth_federated") or {}
    config = json.loads(bot.get("authenticationconfiguration") or "null") or {}
    published_mode = bot.get("_published_auth_mode")
    return {
        "botid": bot["botid"],
        "mode": mode,
        "mode_name": AUTH_MODE_NAMES.get(mode, "Unspecified"),
        "require_sign_in": bot.get("authenticationtrigger") == 1,
        "service_provider": {SECRET: SECRET_PROVIDER, FEDERATED: FEDERATED_PROVIDER}.get(kind or ""),
        "credential_kind": kind,
        "client_id": bot.get("_auth_client_id") if custom else None,
        "tenant_id": federated.get("tenant_id") if kind == FEDERATED else None,
        "issuer": federated.get("issuer") if kind == FEDERATED else None,
        "subject": federated.get("subject") if kind == FEDERATED else None,
        "connection_name": config.get("connectionName"),
        "published": bool(bot.get("_auth_published", True)),
        "published_mode": published_mode,
        "published_mode_name": AUTH_MODE_NAMES.get(published_mode) if published_mode is not None else None,
        "publishedon": bot.get("publishedon"),
    }


def set_custom_authentication(bot: dict[str, Any], kind: str, client_id: str, federated: dict[str, Any] | None = None) -> None:
    """What Save does on the Authenticate manually page: mode 3, sign-in required, a new token-service connection."""
    bot["authenticationmode"] = 3
    bot["authenticationtrigger"] = 1
    bot["authenticationconfiguration"] = json.dumps({"$kind": "BotAuthenticationConfiguration", "connectionName": str(uuid.uuid4())})
    bot["_auth_kind"] = kind
    bot["_auth_client_id"] = client_id
    bot["_auth_federated"] = federated
    bot["_auth_published"] = False
    bot["versionnumber"] += 1


def set_other_authentication(bot: dict[str, Any], mode: int) -> None:
    """Switching to another option (None, Integrated, …) discards the Entra connection (microsoft-apis.md §6)."""
    bot["authenticationmode"] = mode
    bot["authenticationtrigger"] = 0
    bot["authenticationconfiguration"] = None
    bot["_auth_kind"] = bot["_auth_client_id"] = bot["_auth_federated"] = None
    bot["_auth_published"] = False
    bot["versionnumber"] += 1


async def federated_pair(store: Store, authority: str, environment_id: str, bot_id: str, tenant_id: str) -> dict[str, str]:
    """The issuer and value Copilot Studio shows for this agent and tenant; the same pair on every call."""
    key_id = f"{bot_id}:{tenant_id}"
    known = store.get("cps_federated", key_id)
    if known is not None:
        return {"issuer": known["issuer"], "subject": known["subject"]}
    meta = store.get("meta", "copilot_studio")
    if meta is None:
        meta = {"key": secrets.token_hex(32)}
        await store.put("meta", "copilot_studio", meta)
    digest = hmac.new(bytes.fromhex(meta["key"]), f"{environment_id}/{bot_id}".encode(), hashlib.sha256).digest()
    pair = {
        "issuer": f"{authority}/{tenant_id}/v2.0",
        "subject": f"/eid1/c/pub/t/{_b64(uuid.UUID(tenant_id).bytes)}/a/{_b64(uuid.UUID(COPILOT_STUDIO_APP_ID).bytes)}/{_b64(digest)}",
    }
    await store.put("cps_federated", key_id, pair)
    return pair
