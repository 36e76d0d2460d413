"""The tenant's identities: who can get tokens, with which app roles, and their Dataverse roles.

Secrets are kept only as salted SHA-256 hashes (compare with `verify_secret`).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from typing import Any

from .store import Store

GRAPH_RESOURCE = "https://graph.microsoft.com"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
APP_ROLES = (
    "Application.ReadWrite.OwnedBy",
    "Application.ReadWrite.All",
    "Application.Read.All",
    "Policy.Read.All",
    "Directory.Read.All",
)
DATAVERSE_ROLES = ("System Administrator", "System Customizer", "Basic User")


def hash_secret(secret: str, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(16)
    digest = hashlib.sha256((salt + secret).encode()).hexdigest()
    return f"{salt}${digest}"


def verify_secret(secret: str, hashed: str) -> bool:
    salt, _, digest = hashed.partition("$")
    return hmac.compare_digest(hashlib.sha256((salt + secret).encode()).hexdigest(), digest)


def new_secret() -> str:
    """A secret shaped like Entra's: 40 characters from its alphabet."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789~._-"
    return "".join(secrets.choice(alphabet) for _ in range(40))


@dataclass
class Client:
    client_id: str
    display_name: str
    secret_hash: str
    roles: list[str]
    dataverse_roles: dict[str, list[str]] = field(default_factory=dict)  # environment name → roles
    service_principal_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    user_id: str = field(default_factory=lambda: str(uuid.uuid4()))  # Dataverse systemuserid of its application user

    def to_doc(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Identities:
    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, client_id: str) -> Client | None:
        doc = self._store.get("client", client_id)
        return Client(**doc) if doc else None

    async def create(
        self,
        display_name: str,
        roles: list[str],
        dataverse_roles: dict[str, list[str]],
        *,
        client_id: str | None = None,
    ) -> tuple[Client, str]:
        bad = [r for r in roles if r not in APP_ROLES]
        if bad:
            raise ValueError(f"unknown app role(s) {bad}; known: {list(APP_ROLES)}")
        for env_roles in dataverse_roles.values():
            unknown = [r for r in env_roles if r not in DATAVERSE_ROLES]
            if unknown:
                raise ValueError(f"unknown Dataverse role(s) {unknown}; known: {list(DATAVERSE_ROLES)}")
        secret = new_secret()
        client = Client(
            client_id=client_id or str(uuid.uuid4()),
            display_name=display_name,
            secret_hash=hash_secret(secret),
            roles=list(roles),
            dataverse_roles={k: list(v) for k, v in dataverse_roles.items()},
        )
        await self._store.put("client", client.client_id, client.to_doc())
        return client, secret

    async def rotate_secret(self, client_id: str) -> str:
        client = self.get(client_id)
        assert client is not None
        secret = new_secret()
        client.secret_hash = hash_secret(secret)
        await self._store.put("client", client_id, client.to_doc())
        return secret
