"""Does the guided steps in the sandbox's emulated Copilot Studio (only when SANDBOX_URL is set)."""

from __future__ import annotations

from typing import Any

import httpx

from .errors import ProvisioningError


class SandboxOperator:
    def __init__(self, base_url: str, client: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self.client = client

    async def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = await self.client.request(method, f"{self.base_url}/_sandbox/{path}", json=body)
        data = r.json() if r.content else {}
        if r.status_code >= 400:
            raise ProvisioningError(f"The sandbox's emulated Copilot Studio refused: {data.get('error', r.status_code)}",
                                    action="Fix what it says, then try again.")
        return dict(data)

    async def manual_authentication(self, bot_id: str, *, client_id: str, client_secret: str, scopes: str = "profile openid") -> None:
        await self._call("POST", f"bots/{bot_id}/manual-authentication", {
            "client_id": client_id, "client_secret": client_secret, "scopes": scopes,
            "service_provider": "Microsoft Entra ID V2 with client secrets",
        })

    async def federated_authentication(self, bot_id: str, *, client_id: str, tenant_id: str) -> tuple[str, str]:
        """Choose 'Microsoft Entra ID V2 with federated credentials' and enter the ids: the issuer and value it shows."""
        shown = await self._call("POST", f"bots/{bot_id}/federated-authentication", {"client_id": client_id, "tenant_id": tenant_id})
        return str(shown["issuer"]), str(shown["subject"])

    async def save_federated_authentication(self, bot_id: str) -> None:
        await self._call("POST", f"bots/{bot_id}/federated-authentication/save")

    async def enable_secured_access(self, bot_id: str) -> dict[str, Any]:
        return await self._call("POST", f"bots/{bot_id}/secured-access", {"enabled": True})

    async def secured_access(self, bot_id: str) -> dict[str, Any]:
        return await self._call("GET", f"bots/{bot_id}/secured-access")

    async def connect_customer_service(self, bot_id: str) -> None:
        await self._call("POST", f"bots/{bot_id}/customer-service-connection")

    async def switch_authentication(self, bot_id: str, mode: int) -> dict[str, Any]:
        """Choose another authentication for the agent (1 None, 2 Integrated, 4 generic OAuth 2) and save."""
        return await self._call("POST", f"bots/{bot_id}/authentication", {"mode": mode})

    async def disconnect_customer_service(self, bot_id: str) -> None:
        await self._call("DELETE", f"bots/{bot_id}/customer-service-connection")
