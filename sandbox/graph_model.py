"""The shape of Graph's directory objects as the sandbox stores them, and small helpers on them.

Keys starting with `_` are the sandbox's own bookkeeping (owner, creation time, secret hashes, federated
credentials) and never leave it.
"""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timezone
from typing import Any

GRAPH_CONTEXT = "https://graph.microsoft.com/v1.0/$metadata#"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_dt(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def public(doc: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in doc.items() if not k.startswith("_")}
    if "passwordCredentials" in out:
        out["passwordCredentials"] = [{k: v for k, v in p.items() if not k.startswith("_")} for p in out["passwordCredentials"]]
    return out


def deep_merge(target: dict[str, Any], patch: dict[str, Any]) -> None:
    """PATCH semantics: objects merge, everything else (collections included) is replaced."""
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict) and not key.startswith("@"):
            deep_merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


def new_application(display_name: str, owner: str, publisher_domain: str, now: float) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "deletedDateTime": None,
        "appId": str(uuid.uuid4()),
        "applicationTemplateId": None,
        "disabledByMicrosoftStatus": None,
        "createdDateTime": iso(now),
        "displayName": display_name,
        "description": None,
        "groupMembershipClaims": None,
        "identifierUris": [],
        "isDeviceOnlyAuthSupported": None,
        "isFallbackPublicClient": None,
        "notes": None,
        "publisherDomain": publisher_domain,
        "serviceManagementReference": None,
        "signInAudience": "AzureADMyOrg",
        "tags": [],
        "tokenEncryptionKeyId": None,
        "uniqueName": None,
        "api": {
            "acceptMappedClaims": None,
            "knownClientApplications": [],
            "requestedAccessTokenVersion": None,
            "oauth2PermissionScopes": [],
            "preAuthorizedApplications": [],
        },
        "appRoles": [],
        "info": {"logoUrl": None, "marketingUrl": None, "privacyStatementUrl": None, "supportUrl": None, "termsOfServiceUrl": None},
        "keyCredentials": [],
        "optionalClaims": None,
        "parentalControlSettings": {"countriesBlockedForMinors": [], "legalAgeGroupRule": "Allow"},
        "passwordCredentials": [],
        "publicClient": {"redirectUris": []},
        "requiredResourceAccess": [],
        "spa": {"redirectUris": []},
        "web": {
            "homePageUrl": None,
            "logoutUrl": None,
            "redirectUris": [],
            "implicitGrantSettings": {"enableAccessTokenIssuance": False, "enableIdTokenIssuance": False},
            "redirectUriSettings": [],
        },
        "_owner": owner,
        "_created": now,
        "_federated": [],
    }
