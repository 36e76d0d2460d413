"""Typed wrappers for the Dataverse Web API calls: find and read agents, publish, find application users."""

from __future__ import annotations

import json
from typing import Any

from .errors import NotFoundError
from .http import MicrosoftHttp, OnRetry

API = "api/data/v9.2"
BOT_COLUMNS = (
    "botid", "name", "schemaname", "authenticationmode", "authenticationtrigger", "accesscontrolpolicy",
    "authenticationconfiguration", "configuration", "synchronizationstatus", "publishedon", "statecode", "statuscode",
)
BOT_APPLICATION_USER = 192350001


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def memo(value: Any) -> dict[str, Any]:
    """Parse one of the bot table's JSON memo columns; anything unreadable is an empty object."""
    if isinstance(value, dict):
        return value
    if not value:
        return {}
    try:
        parsed = json.loads(value)
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


class DataverseClient:
    def __init__(self, http: MicrosoftHttp, environment_url: str) -> None:
        self.http = http
        self.environment_url = environment_url
        self._organization: tuple[str, str] | None = None

    async def who_am_i(self) -> dict[str, Any]:
        return dict((await self.http.request("GET", f"{API}/WhoAmI")).body)

    async def organization(self) -> tuple[str, str]:
        """The environment's organization id and friendly name (read once: they practically never change)."""
        if self._organization is None:
            body = (await self.http.request("GET", f"{API}/organizations", params={"$select": "organizationid,friendlyname"})).body
            row = body["value"][0]
            self._organization = (str(row["organizationid"]), str(row.get("friendlyname") or ""))
        return self._organization

    async def organization_id(self) -> str:
        return (await self.organization())[0]

    async def list_bots(self) -> list[dict[str, Any]]:
        body = (await self.http.request("GET", f"{API}/bots", params={"$select": ",".join(BOT_COLUMNS), "$filter": "statecode eq 0"})).body
        return [dict(b) for b in body["value"]]

    async def find_bot(self, *, schema_name: str | None = None, bot_id: str | None = None) -> dict[str, Any] | None:
        if bot_id:
            try:
                return await self.get_bot(bot_id)
            except NotFoundError:
                return None
        if not schema_name:
            raise ValueError("find_bot needs a schema name or a bot id")
        body = (await self.http.request(
            "GET", f"{API}/bots", params={"$select": ",".join(BOT_COLUMNS), "$filter": f"schemaname eq {_literal(schema_name)}"}
        )).body
        rows = body["value"]
        return dict(rows[0]) if rows else None

    async def get_bot(self, bot_id: str, *, step: str | None = None) -> dict[str, Any]:
        r = await self.http.request("GET", f"{API}/bots({bot_id})", params={"$select": ",".join(BOT_COLUMNS)}, step=step)
        return dict(r.body)

    async def publish(self, bot_id: str, *, step: str | None = None, on_retry: OnRetry | None = None) -> None:
        await self.http.request("POST", f"{API}/bots({bot_id})/Microsoft.Dynamics.CRM.PvaPublish", json={}, step=step, on_retry=on_retry)

    async def find_bot_application_user(self, application_id: str, *, step: str | None = None) -> dict[str, Any] | None:
        params = {
            "$select": "systemuserid,fullname,applicationid,msdyn_botapplicationid,msdyn_agentType,msdyn_botprovider,isdisabled",
            "$filter": f"msdyn_botapplicationid eq {_literal(application_id)} and msdyn_agentType eq {BOT_APPLICATION_USER}",
        }
        rows = (await self.http.request("GET", f"{API}/systemusers", params=params, step=step)).body["value"]
        return dict(rows[0]) if rows else None
