"""`GET /_sandbox/state`: what the tenant holds, for tests and people; never a secret or its hash."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .copilot_studio import authentication_view
from .graph_credentials import public_credential

if TYPE_CHECKING:
    from .app import Sandbox


def strip(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if not k.startswith("_")}
    if "passwordCredentials" in out:
        out["passwordCredentials"] = [{k: v for k, v in p.items() if not k.startswith("_")} for p in out["passwordCredentials"]]
    return out


def application_state(app: dict[str, Any]) -> dict[str, Any]:
    """An application as the operator sees it: with its owner and federated identity credentials."""
    doc = strip(app)
    doc["owner"] = app.get("_owner")
    doc["federatedIdentityCredentials"] = [public_credential(c) for c in app.get("_federated", [])]
    return doc


async def snapshot(sb: "Sandbox") -> dict[str, Any]:
    envs = {}
    for name, env in sb.environments.items():
        bots = []
        for b in await env.bots():
            doc = strip(b)
            doc["registration_application_id"] = b["_registration_app_id"]
            doc["parent_botid"] = b.get("_parent_botid")
            doc["secured_access"] = sb.store.get("secured_access", b["botid"])
            doc["authentication"] = authentication_view(b)
            bots.append(doc)
        org = sb.store.get("organization", name) or {}
        envs[name] = {
            "url": env.origin,
            "organization_id": org.get("organizationid"),
            "friendly_name": org.get("friendlyname"),
            "bots": bots,
            "bot_application_users": [strip(u) for u in env.systemusers() if u.get("msdyn_agentType") == 192350001],
            "workstreams": [strip(w) | {"_msdyn_bot_user_value": w.get("_msdyn_bot_user_value")} for w in sb.store.all("workstream") if w["_env"] == name],
        }
    return {
        "tenant_id": sb.entra.tenant_id if sb.entra else None,
        "applications": [application_state(a) for a in sb.store.all("application")],
        "service_principals": [strip(sp) for sp in sb.store.all("service_principal")],
        "environments": envs,
        "faults": sb.faults.settings.to_dict(),
        "policy": sb.policy.to_dict(),
        "clock": {"offset_s": sb.clock.offset_s, "now": sb.clock.iso()},
    }
