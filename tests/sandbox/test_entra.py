"""Entra ID token endpoint: msal's ConfidentialClientApplication works unmodified; refusals are AADSTS-shaped."""

from __future__ import annotations

import asyncio

import jwt

from sandbox import Sandbox
from tests.fixtures.sandbox import acquire_token, sandbox_http

from .helpers import GRAPH, env_url, new_client


async def test_msal_gets_a_signed_graph_token_with_roles(sandbox: Sandbox) -> None:
    result = await asyncio.to_thread(acquire_token, sandbox, GRAPH)
    assert result["token_type"] == "Bearer"
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    header = jwt.get_unverified_header(result["access_token"])
    assert header["alg"] == "RS256" and header["kid"]
    assert claims["aud"] == GRAPH
    assert claims["tid"] == sandbox.env["PROVISIONING_TENANT_ID"]
    assert claims["appid"] == sandbox.env["PROVISIONING_CLIENT_ID"]
    assert set(claims["roles"]) == {"Application.ReadWrite.OwnedBy", "Policy.Read.All"}
    assert claims["exp"] > claims["iat"]


async def test_dataverse_token_audience_is_the_environment_origin(sandbox: Sandbox) -> None:
    result = await asyncio.to_thread(acquire_token, sandbox, env_url(sandbox))
    claims = jwt.decode(result["access_token"], options={"verify_signature": False})
    assert claims["aud"] == env_url(sandbox)
    assert "roles" not in claims


async def test_token_signature_verifies_against_published_keys(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        tenant = sandbox.env["PROVISIONING_TENANT_ID"]
        config = (await http.get(f"{sandbox.env['AZURE_AUTHORITY_HOST']}/{tenant}/v2.0/.well-known/openid-configuration")).json()
        jwks = (await http.get(config["jwks_uri"])).json()
    token = (await asyncio.to_thread(acquire_token, sandbox, GRAPH))["access_token"]
    key = jwt.PyJWK(jwks["keys"][0]).key
    claims = jwt.decode(token, key, algorithms=["RS256"], audience=GRAPH)
    assert claims["tid"] == tenant


async def test_wrong_secret_is_invalid_client(sandbox: Sandbox) -> None:
    result = await asyncio.to_thread(acquire_token, sandbox, GRAPH, secret="not-the-secret")
    assert result["error"] == "invalid_client"
    assert 7000215 in result["error_codes"]
    assert "AADSTS7000215" in result["error_description"]
    assert "not-the-secret" not in result["error_description"]


async def test_unknown_client_is_unauthorized_client(sandbox: Sandbox) -> None:
    result = await asyncio.to_thread(
        acquire_token, sandbox, GRAPH, client_id="11111111-2222-3333-4444-555555555555", secret="x"
    )
    assert result["error"] == "unauthorized_client"
    assert "AADSTS700016" in result["error_description"]


async def test_unknown_resource_and_bad_scope_are_refused(sandbox: Sandbox) -> None:
    result = await asyncio.to_thread(acquire_token, sandbox, "https://unknown.example.com")
    assert result["error"] == "invalid_resource" and "AADSTS500011" in result["error_description"]
    async with sandbox_http(sandbox) as http:
        r = await http.post(
            f"{sandbox.env['AZURE_AUTHORITY_HOST']}/{sandbox.env['PROVISIONING_TENANT_ID']}/oauth2/v2.0/token",
            data={"grant_type": "client_credentials", "client_id": sandbox.env["PROVISIONING_CLIENT_ID"],
                  "client_secret": sandbox.env["PROVISIONING_CLIENT_SECRET"], "scope": "User.Read"},
        )
    assert r.status_code == 400
    assert r.json()["error"] == "invalid_scope"


async def test_unknown_tenant_is_refused(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        r = await http.get(f"{sandbox.env['AZURE_AUTHORITY_HOST']}/not-a-tenant/v2.0/.well-known/openid-configuration")
    assert r.status_code == 400
    assert "AADSTS90002" in r.json()["error_description"]


async def test_client_registered_through_operator_gets_only_its_roles(sandbox: Sandbox) -> None:
    async with sandbox_http(sandbox) as http:
        cid, secret = await new_client(http, sandbox, ["Application.ReadWrite.All"])
    claims = jwt.decode(
        (await asyncio.to_thread(acquire_token, sandbox, GRAPH, client_id=cid, secret=secret))["access_token"],
        options={"verify_signature": False},
    )
    assert claims["roles"] == ["Application.ReadWrite.All"]


async def test_instance_discovery_answers_for_its_own_host_only(sandbox: Sandbox) -> None:
    host = sandbox.env["AZURE_AUTHORITY_HOST"]
    tenant = sandbox.env["PROVISIONING_TENANT_ID"]
    async with sandbox_http(sandbox) as http:
        ok = await http.get(f"{host}/common/discovery/instance",
                            params={"authorization_endpoint": f"https://127.0.0.1/{tenant}/oauth2/v2.0/authorize", "api-version": "1.0"})
        bad = await http.get(f"{host}/common/discovery/instance",
                             params={"authorization_endpoint": "https://evil.example.com/x/oauth2/v2.0/authorize", "api-version": "1.0"})
    assert ok.json()["tenant_discovery_endpoint"] == f"{host}/{tenant}/v2.0/.well-known/openid-configuration"
    assert bad.status_code == 400 and bad.json()["error"] == "invalid_instance"
