"""The tenant's default app-management policy (`GET /v1.0/policies/defaultAppManagementPolicy`).

Two restrictions on applications' password credentials are emulated (Graph docs
`passwordcredentialconfiguration`, `tenantappmanagementpolicy`): `passwordLifetime` (a maximum secret
lifetime, answered by addPassword with 400 `CredentialInvalidLifetimeAsPerAppPolicy`) and `passwordAddition`
(no new client secrets at all, answered with 400 `CredentialTypeNotAllowedAsPerAppPolicy`). A restriction
applies to applications created on or after its `restrictForAppsCreatedAfterDateTime` (null: to all).
Federated identity credentials are not restricted by either.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from .graph_model import parse_dt

LIFETIME_SINCE = "2020-01-01T00:00:00Z"
ADDITION_SINCE = "2019-01-01T00:00:00Z"


@dataclass
class TenantPolicy:
    max_password_lifetime: str | None = "P365D"  # ISO 8601 days like "P365D"; None: no lifetime restriction
    block_password_addition: bool = False
    password_addition_applies_after: str | None = ADDITION_SINCE  # restrictForAppsCreatedAfterDateTime

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def updated(self, data: dict[str, Any]) -> "TenantPolicy":
        """A copy changed by a JSON object (`PUT /_sandbox/policy`); unknown or invalid fields raise ValueError."""
        values = self.to_dict()
        unknown = sorted(set(data) - set(values))
        if unknown:
            raise ValueError(f"unknown policy setting(s): {', '.join(unknown)}; known: {', '.join(values)}")
        if "block_password_addition" in data:
            if not isinstance(data["block_password_addition"], bool):
                raise ValueError("block_password_addition must be true or false")
            values["block_password_addition"] = data["block_password_addition"]
        if "max_password_lifetime" in data:
            life = data["max_password_lifetime"]
            if life is not None and not (isinstance(life, str) and re.fullmatch(r"P\d+D", life)):
                raise ValueError("max_password_lifetime must be an ISO 8601 number of days like 'P365D', or null")
            values["max_password_lifetime"] = life
        if "password_addition_applies_after" in data:
            since = data["password_addition_applies_after"]
            if since is not None:
                try:
                    parse_dt(str(since))
                except ValueError:
                    raise ValueError("password_addition_applies_after must be an ISO 8601 date-time or null") from None
            values["password_addition_applies_after"] = since
        return TenantPolicy(**values)

    def max_lifetime(self) -> timedelta | None:
        m = re.fullmatch(r"P(\d+)D", self.max_password_lifetime or "")
        return timedelta(days=int(m.group(1))) if m else None

    def blocks_password_addition(self, app_created: str) -> bool:
        if not self.block_password_addition:
            return False
        since = self.password_addition_applies_after
        return since is None or parse_dt(app_created) >= parse_dt(since)

    def restrictions(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if self.block_password_addition:
            out.append({
                "restrictionType": "passwordAddition",
                "state": "enabled",
                "maxLifetime": None,
                "restrictForAppsCreatedAfterDateTime": self.password_addition_applies_after,
            })
        if self.max_password_lifetime:
            out.append({
                "restrictionType": "passwordLifetime",
                "maxLifetime": self.max_password_lifetime,
                "restrictForAppsCreatedAfterDateTime": LIFETIME_SINCE,
                "state": "enabled",
            })
        return out
