"""Typed wrappers for the few Microsoft Graph v1.0 calls the setup needs."""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any, Mapping, Sequence
from urllib.parse import quote

from .errors import NotFoundError
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

    async def application_and_time(self, object_id: str, *, step: str | None = None) -> tuple[dict[str, Any], datetime | None]:
        """The application and Graph's own time (its `Date` header): an expiry is judged by Microsoft's clock, not ours."""
        r = await self.http.request("GET", f"v1.0/applications/{object_id}", step=step)
        date = r.headers.get("Date")
        try:
            at = parsedate_to_datetime(date) if date else None
        except (TypeError, ValueError):
            at = None
        return dict(r.body), at

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
        """Removed, or already gone: Graph answers 404 for a key (or application) that does not exist."""
        try:
            await self.http.request("POST", f"v1.0/applications/{object_id}/removePassword", json={"keyId": key_id}, step=step)
        except NotFoundError:
            return

    async def owner_app_ids(self, object_id: str, *, created_at: datetime | None = None, step: str | None = None) -> list[str]:
        """The appIds of the service principals that own the application (users and groups have none)."""
        r = await self.http.request("GET", f"v1.0/applications/{object_id}/owners", params={"$select": "id,appId,displayName"},
                                    created_at=created_at, step=step)
        return [str(o["appId"]) for o in (r.body or {}).get("value", []) if o.get("appId")]

    async def delete_application(self, object_id: str, *, step: str | None = None) -> None:
        """Deleted (to the tenant's recycle bin for 30 days), or already gone."""
        try:
            await self.http.request("DELETE", f"v1.0/applications/{object_id}", step=step)
        except NotFoundError:
            return

    # ---- federated identity credentials ---------------------------------------------------------------------------

    async def federated_credentials(self, object_id: str, *, created_at: datetime | None = None, step: str | None = None) -> list[dict[str, Any]]:
        r = await self.http.request("GET", f"v1.0/applications/{object_id}/federatedIdentityCredentials", created_at=created_at, step=step)
        return [dict(c) for c in (r.body or {}).get("value", [])]

    async def federated_credential(self, object_id: str, name: str, *, step: str | None = None) -> dict[str, Any] | None:
        try:
            r = await self.http.request("GET", f"v1.0/applications/{object_id}/federatedIdentityCredentials(name='{_key(name)}')", step=step)
        except NotFoundError:
            return None
        return dict(r.body)

    async def upsert_federated_credential(
        self, object_id: str, name: str, body: Mapping[str, Any], *, created_at: datetime | None = None,
        step: str | None = None, on_retry: OnRetry | None = None,
    ) -> bool:
        """PATCH …/federatedIdentityCredentials(name=…) with Prefer: create-if-missing (idempotent by name): True if created."""
        r = await self.http.request(
            "PATCH", f"v1.0/applications/{object_id}/federatedIdentityCredentials(name='{_key(name)}')", json=dict(body),
            headers={"Prefer": "create-if-missing"}, created_at=created_at, step=step, on_retry=on_retry)
        return r.status == 201

    async def delete_federated_credential(self, object_id: str, credential_id: str, *, step: str | None = None) -> None:
        try:
            await self.http.request("DELETE", f"v1.0/applications/{object_id}/federatedIdentityCredentials/{credential_id}", step=step)
        except NotFoundError:
            return

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
