"""What a fresh sandbox tenant holds: one organization, workstream and a few Copilot Studio agents per
environment; and the shapes of the Dataverse rows the emulated portals create later."""

from __future__ import annotations

import json
import uuid
from typing import Any

from .dataverse import friendly_name, sync_status
from .store import Store

SEED_AGENTS: dict[str, list[dict[str, Any]]] = {
    "contoso": [
        {"name": "Contoso Support", "schemaname": "cr6a1_contosoSupport"},
        {"name": "Contoso Returns and Warranty Claims Assistant", "schemaname": "cr6a1_contosoReturnsWarranty"},
        {"name": "Contoso HR Helpdesk", "schemaname": "cr6a1_contosoHrHelpdesk", "set_up": True},
    ],
    "fabrikam": [{"name": "Fabrikam Service Desk", "schemaname": "cr7b2_fabrikamServiceDesk"}],
}


def new_bot(env: str, name: str, schemaname: str, now: str, *, set_up: bool = False, published: bool = True,
            parent_botid: str | None = None) -> dict[str, Any]:
    """A `bot` row; `set_up`: already authenticated manually (mode 3) and connected to Customer Service."""
    registration = str(uuid.uuid4())
    mode = 3 if set_up else 2
    stamp = now if published else None
    return {
        "botid": str(uuid.uuid4()), "name": name, "schemaname": schemaname,
        "authenticationmode": mode, "authenticationtrigger": 1 if set_up else 0, "accesscontrolpolicy": 0,
        "authenticationconfiguration": json.dumps({"$kind": "BotAuthenticationConfiguration", "connectionName": str(uuid.uuid4())}) if set_up else None,
        "configuration": json.dumps({"$kind": "BotConfiguration", "channels": [{"$kind": "ChannelDefinition", "channelId": "MsTeams"}]}),
        "synchronizationstatus": sync_status(mode, registration, stamp, now=now),
        "publishedon": stamp, "statecode": 0, "statuscode": 1, "ismanaged": False, "language": 1033,
        "createdon": now, "modifiedon": now, "versionnumber": 1,
        "_env": env, "_registration_app_id": registration, "_publish_due": None, "_published_auth_mode": mode if published else None,
        "_parent_botid": parent_botid,
    }


def bot_application_user(env: str, bot: dict[str, Any]) -> dict[str, Any]:
    """The Omnichannel bot application user that Customer Service → Connect creates (microsoft-apis.md §8)."""
    app_id = bot["_registration_app_id"]
    return {
        "systemuserid": str(uuid.uuid4()), "fullname": bot["name"], "applicationid": app_id, "isdisabled": False,
        "accessmode": 4, "msdyn_agentType": 192350001, "msdyn_botprovider": 192350000,
        "msdyn_botapplicationid": app_id, "msdyn_bothandle": bot["schemaname"], "msdyn_usertype": 192350001,
        "msdyn_owningenvironmentid": env, "azureactivedirectoryobjectid": None, "_env": env,
    }


async def seed(store: Store, environments: tuple[str, ...], now: str) -> None:
    for name in environments:
        org = {"organizationid": str(uuid.uuid4()), "name": name, "friendlyname": friendly_name(name), "_business_unit": str(uuid.uuid4())}
        await store.put("organization", name, org)
        ws_id = str(uuid.uuid4())
        await store.put("workstream", ws_id, {
            "msdyn_liveworkstreamid": ws_id, "msdyn_name": f"{name.title()} chat workstream",
            "_msdyn_bot_user_value": None, "msdyn_bothandle": None, "_env": name,
        })
        for agent in SEED_AGENTS.get(name, [{"name": f"{name.title()} Agent", "schemaname": f"cr0_{name}Agent"}]):
            bot = new_bot(name, agent["name"], agent["schemaname"], now, set_up=bool(agent.get("set_up")))
            await store.put("bot", bot["botid"], bot)
            if agent.get("set_up"):
                user = bot_application_user(name, bot)
                await store.put("systemuser", user["systemuserid"], user)
    await store.put("meta", "seeded", {"at": now})
