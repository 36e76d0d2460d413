"""The operator endpoint (`SANDBOX_URL/_sandbox/...`): what a person does in portals that have no API,
plus test controls. Agents' steps live in operator_bots.py, app-registration edits in operator_drift.py.

- `POST /_sandbox/clients`: register another app-only identity (tests use less-privileged ones)
- `GET|PUT /_sandbox/faults`: read or change the fault settings
- `GET|PUT /_sandbox/policy`: read or change the tenant's app-management policy
- `GET|PUT /_sandbox/clock`: read or shift the sandbox's notion of now
- `GET /_sandbox/state`: what the tenant holds (never a secret)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from .faults import FaultSettings
from .operator_base import problem, read_json
from .operator_bots import BotSteps
from .operator_drift import Drift

if TYPE_CHECKING:
    from .app import Sandbox


class Operator:
    def __init__(self, sandbox: "Sandbox") -> None:
        self.sb = sandbox

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/_sandbox/healthz", self.healthz),
            web.post("/_sandbox/clients", self.create_client),
            web.get("/_sandbox/faults", self.get_faults),
            web.put("/_sandbox/faults", self.put_faults),
            web.get("/_sandbox/policy", self.get_policy),
            web.put("/_sandbox/policy", self.put_policy),
            web.get("/_sandbox/clock", self.get_clock),
            web.put("/_sandbox/clock", self.put_clock),
            web.get("/_sandbox/state", self.state),
            *BotSteps(self.sb).routes(),
            *Drift(self.sb).routes(),
        ]

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def create_client(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        by_origin = {env.origin: name for name, env in self.sb.environments.items()}
        dataverse_roles: dict[str, list[str]] = {}
        for origin, roles in (body.get("dataverse_roles") or {}).items():
            name = by_origin.get(origin.rstrip("/"), origin if origin in self.sb.environments else None)
            if name is None:
                return problem(400, f"unknown environment {origin!r}; known: {sorted(by_origin)}")
            dataverse_roles[name] = list(roles)
        try:
            client, secret = await self.sb.identities.create(
                str(body.get("display_name") or "sandbox test client"), list(body.get("roles") or []), dataverse_roles
            )
        except ValueError as exc:
            return problem(400, str(exc))
        return web.json_response({"client_id": client.client_id, "client_secret": secret}, status=201)

    async def get_faults(self, request: web.Request) -> web.Response:
        return web.json_response(self.sb.faults.settings.to_dict())

    async def put_faults(self, request: web.Request) -> web.Response:
        try:
            settings = FaultSettings.from_dict(await read_json(request), self.sb.faults.settings)
        except (ValueError, TypeError) as exc:
            return problem(400, str(exc))
        self.sb.faults.update(settings)
        return web.json_response(settings.to_dict())

    async def get_policy(self, request: web.Request) -> web.Response:
        return web.json_response(self.sb.policy.to_dict())

    async def put_policy(self, request: web.Request) -> web.Response:
        try:
            changed = self.sb.policy.updated(await read_json(request))
        except ValueError as exc:
            return problem(400, str(exc))
        for name, value in changed.to_dict().items():
            setattr(self.sb.policy, name, value)  # the one policy object Graph reads
        return web.json_response(self.sb.policy.to_dict())

    def _clock_view(self) -> dict[str, object]:
        clock = self.sb.clock
        return {"offset_s": clock.offset_s, "now": clock.iso(), "date": clock.http_date()}

    async def get_clock(self, request: web.Request) -> web.Response:
        return web.json_response(self._clock_view())

    async def put_clock(self, request: web.Request) -> web.Response:
        offset = (await read_json(request)).get("offset_s")
        if isinstance(offset, bool) or not isinstance(offset, (int, float)):
            return problem(400, "offset_s must be a number of seconds (the shift from real time; 0 undoes it)")
        try:
            await self.sb.set_clock_offset(float(offset))
        except ValueError as exc:
            return problem(400, str(exc))
        return web.json_response(self._clock_view())

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(await self.sb.snapshot())
