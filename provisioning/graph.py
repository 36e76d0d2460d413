"""Typed wrappers for the few Microsoft Graph v1.0 calls the setup needs."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Mapping, Sequence
from urllib.parse import quote

from .errors import BadRequestError, NotFoundError
from .http import MicrosoftHttp, OnRetry

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"


def _key(value: str) -> str:
    return quote(value.replace("'", "''"), safe="")


class GraphClient:
    def __init__(self, http: MicrosoftHttp) -> None:
        self.http = http

    async def get_application_by_unique_name(self, unique_name: str, *, step: str | None = None) -> dict[str, Any] | None:
        try:
            r = await self.http.request("GET", f"v1.0/applications(uniqueName='{_key(unique_name)}')", step=step)
        except NotFoundError:
            return None
        return dict(r.body)

    async def upsert_application(
        self, unique_name: str, body: Mapping[str, Any], *, step: str | None = None, on_retry: OnRetry | None = None
    ) -> tuple[bool, dict[str, Any] | None]:
        """PATCH /applications(uniqueName=…) with Prefer: create-if-missing: (True, app) on 201, (False, None) on 204."""
        r = await self.http.request(
            "PATCH", f"v1.0/applications(uniqueName='{_key(unique_name)}')", json=dict(body),
            headers={"Prefer": "create-if-missing"}, step=step, on_retry=on_retry,
        )
        return (True, dict(r.body)) if r.status == 201 else (False, None)

    async def get_application(
        self, object_id: str, *, select: Sequence[str] = (), created_at: datetime | None = None,
        step: str | None = None, on_retry: OnRetry | None = None,
    ) -> dict[str, Any]:
        params = {"$select": ",".join(select)} if select else None
        r = await self.http.request("GET", f"v1.0/applications/{object_id}", params=params, created_at=created_at, step=step, on_retry=on_retry)
        return dict(r.body)

    async def update_application(self, object_id: str, body: Mapping[str, Any], *, created_at: datetime | None = None, step: str | None = None) -> None:
        await self.http.request("PATCH", f"v1.0/applications/{object_id}", json=dict(body), created_at=created_at, step=step)

    async def add_password(
        self, object_id: str, *, display_name: str, end: datetime, created_at: datetime | None = None,
        step: str | None = None, on_retry: OnRetry | None = None,
    ) -> dict[str, Any]:
        """Not idempotent: never replayed after an ambiguous failure. The result holds secretText: vault it at once."""
        body = {"passwordCredential": {"displayName": display_name, "endDateTime": end.strftime("%Y-%m-%dT%H:%M:%SZ")}}
        r = await self.http.request(
            "POST", f"v1.0/applications/{object_id}/addPassword", json=body, idempotent=False,
            created_at=created_at, step=step, on_retry=on_retry,
        )
        return dict(r.body)

    async def remove_password(self, object_id: str, key_id: str, *, step: str | None = None) -> None:
        try:
            await self.http.request("POST", f"v1.0/applications/{object_id}/removePassword", json={"keyId": key_id}, step=step)
        except NotFoundError:
            return
        except BadRequestError as exc:
            if "No password credential" in exc.ms_message:
                return
            raise

    async def get_service_principal(self, app_id: str, *, step: str | None = None) -> dict[str, Any] | None:
        try:
            r = await self.http.request("GET", f"v1.0/servicePrincipals(appId='{_key(app_id)}')", step=step)
        except NotFoundError:
            return None
        return dict(r.body)

    async def create_service_principal(self, app_id: str, *, created_at: datetime | None = None, step: str | None = None,
                                       on_retry: OnRetry | None = None) -> dict[str, Any]:
        r = await self.http.request("POST", "v1.0/servicePrincipals", json={"appId": app_id}, idempotent=False,
                                    created_at=created_at, step=step, on_retry=on_retry)
        return dict(r.body)

    async def get_app_management_policy(self) -> dict[str, Any] | None:
        """The tenant's default app-management policy, or None when the identity may not read it (403)."""
        from .errors import PermissionDeniedError

        try:
            r = await self.http.request("GET", "v1.0/policies/defaultAppManagementPolicy")
        except PermissionDeniedError:
            return None
        return dict(r.body)
