"""Microsoft Entra ID's token endpoint, enough for msal's ConfidentialClientApplication unmodified:
instance discovery, OpenID discovery, signing keys, and the client-credentials grant.

Tokens are RS256 JWTs with `aud`, `iss`, `tid`, `appid`, `oid`, `roles`, `exp`, verified by Graph and
Dataverse with `verify_token`.
"""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from .errors import aad_error
from .identity import GRAPH_APP_ID, GRAPH_RESOURCE, Identities, verify_secret

TOKEN_LIFETIME_S = 3599


def _b64(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@dataclass
class TokenInfo:
    client_id: str
    object_id: str
    roles: frozenset[str]
    audience: str


class InvalidToken(Exception):
    """Why a bearer token was refused, in the words the resource uses."""


class Entra:
    def __init__(self, *, tenant_id: str, identities: Identities, key_pem: bytes, resources: list[str]) -> None:
        self.tenant_id = tenant_id
        self.identities = identities
        key = serialization.load_pem_private_key(key_pem, password=None)
        assert isinstance(key, RSAPrivateKey)
        self._key = key
        self._kid = uuid.uuid5(uuid.NAMESPACE_URL, tenant_id).hex[:16]
        self.resources = resources  # Graph, the Bot Connector, every Dataverse origin
        self.base_url = ""  # set once the server listens

    @staticmethod
    def new_key_pem() -> bytes:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())

    @property
    def issuer(self) -> str:
        return f"https://sts.windows.net/{self.tenant_id}/"

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/common/discovery/instance", self.instance_discovery),
            web.get("/{tenant}/v2.0/.well-known/openid-configuration", self.openid_configuration),
            web.get("/{tenant}/discovery/v2.0/keys", self.keys),
            web.post("/{tenant}/oauth2/v2.0/token", self.token),
        ]

    async def instance_discovery(self, request: web.Request) -> web.Response:
        endpoint = urlsplit(request.query.get("authorization_endpoint", ""))
        # msal sends the host without its port; Entra compares hosts.
        if endpoint.scheme != "https" or endpoint.hostname != urlsplit(self.base_url).hostname:
            return web.json_response(
                {"error": "invalid_instance", "error_description": "AADSTS50049: Unknown or invalid instance."},
                status=400,
            )
        tenant = endpoint.path.strip("/").split("/")[0]
        return web.json_response(
            {
                "tenant_discovery_endpoint": f"{self.base_url}/{tenant}/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": self.base_url.split("//")[1], "aliases": [self.base_url.split("//")[1]]}],
            }
        )

    def _known_tenant(self, tenant: str) -> bool:
        return tenant in (self.tenant_id, "organizations", "common")

    async def openid_configuration(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        if not self._known_tenant(tenant):
            return aad_error(400, "invalid_tenant", 90002, f"Tenant '{tenant}' not found.")
        base = f"{self.base_url}/{self.tenant_id}"
        return web.json_response(
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "response_modes_supported": ["query", "fragment", "form_post"],
                "subject_types_supported": ["pairwise"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "issuer": f"{self.base_url}/{self.tenant_id}/v2.0",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
                "tenant_region_scope": "EU",
            }
        )

    async def keys(self, request: web.Request) -> web.Response:
        numbers = self._key.public_key().public_numbers()
        return web.json_response(
            {"keys": [{"kty": "RSA", "use": "sig", "kid": self._kid, "n": _b64(numbers.n), "e": _b64(numbers.e)}]}
        )

    async def token(self, request: web.Request) -> web.Response:
        tenant = request.match_info["tenant"]
        if not self._known_tenant(tenant):
            return aad_error(400, "invalid_request", 90002, f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID.")
        form = await request.post()
        grant = str(form.get("grant_type", ""))
        if grant != "client_credentials":
            return aad_error(400, "unsupported_grant_type", 70003, f"The app requested an unsupported grant type '{grant}'.")
        client_id = str(form.get("client_id", ""))
        client = self.identities.get(client_id)
        if client is None:
            return aad_error(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{self.tenant_id}'. "
                "This can happen if the application has not been installed by the administrator of the tenant.",
            )
        secret = str(form.get("client_secret", ""))
        if not secret:
            return aad_error(
                401, "invalid_client", 7000216,
                "'client_assertion', 'client_secret' or 'request' is required for the 'client_credentials' grant type.",
            )
        if not verify_secret(secret, client.secret_hash):
            return aad_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, "
                f"not the client secret ID, for a secret added to app '{client_id}'.",
            )
        scope = str(form.get("scope", "")).strip()
        scopes = scope.split()
        default = [s for s in scopes if s.endswith("/.default")]
        if len(default) != 1 or len(scopes) != 1:
            return aad_error(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a scope value "
                "with /.default suffixed to the resource identifier (application ID URI).",
            )
        resource = default[0][: -len("/.default")]
        if resource == GRAPH_APP_ID:
            resource = GRAPH_RESOURCE
        if resource not in self.resources:
            return aad_error(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant named {self.tenant_id}. "
                "This can happen if the application has not been installed by the administrator of the tenant.",
            )
        roles = client.roles if resource == GRAPH_RESOURCE else []
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": resource,
            "iss": self.issuer,
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_S,
            "appid": client.client_id,
            "appidacr": "1",
            "idtyp": "app",
            "oid": client.service_principal_id,
            "sub": client.service_principal_id,
            "tid": self.tenant_id,
            "ver": "1.0",
        }
        if roles:
            claims["roles"] = roles
        token = jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self._kid, "typ": "JWT"})
        return web.json_response(
            {"token_type": "Bearer", "expires_in": TOKEN_LIFETIME_S, "ext_expires_in": TOKEN_LIFETIME_S, "access_token": token}
        )

    def verify_token(self, authorization: str | None, audience: str) -> TokenInfo:
        if not authorization:
            raise InvalidToken("Access token is empty.")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise InvalidToken("Access token is empty.")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise InvalidToken("IDX14100: JWT is not well formed.") from None
        if header.get("alg") != "RS256" or header.get("kid") != self._kid:
            raise InvalidToken("Access token validation failure. Invalid signature.")
        try:
            claims = jwt.decode(
                token,
                self._key.public_key(),
                algorithms=["RS256"],
                audience=audience,
                issuer=self.issuer,
                options={"require": ["exp", "aud", "iss", "tid"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidToken("Lifetime validation failed, the token is expired.") from None
        except jwt.InvalidAudienceError:
            raise InvalidToken("Access token validation failure. Invalid audience.") from None
        except jwt.InvalidIssuerError:
            raise InvalidToken("Access token validation failure. Invalid issuer.") from None
        except jwt.PyJWTError:
            raise InvalidToken("Access token validation failure. Invalid signature.") from None
        if claims.get("tid") != self.tenant_id:
            raise InvalidToken("Access token validation failure. Invalid tenant.")
        return TokenInfo(
            client_id=str(claims.get("appid", "")),
            object_id=str(claims.get("oid", "")),
            roles=frozenset(claims.get("roles", [])),
            audience=audience,
        )
