"""Step 2: the client secret. addPassword is not idempotent, so its display name carries the job id; a
resumed job first removes any secret of its own whose text it lost, then makes one: no orphans."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from ..models import CLIENT_SECRET, AgentSummary, Change, PlannedStep, SetupRequest, StepAction, StepName
from .base import SECRET_MARKER, Step, StepContext, now, parse_time


def marker(job_id: str) -> str:
    return f"{SECRET_MARKER} {job_id[:8]}"


class ClientSecret(Step):
    name = StepName.CLIENT_SECRET

    def applies(self, request: SetupRequest) -> bool:
        return request.credential == CLIENT_SECRET

    def skip_reason(self, request: SetupRequest, agent: AgentSummary) -> str:
        return "a federated credential is used instead, so there is no secret to store or rotate"

    async def read(self, ctx: StepContext) -> dict[str, Any]:
        app = await ctx.application(self.name.value)
        creds = list((app or {}).get("passwordCredentials") or [])
        stamp = now()
        ours = [c for c in creds if str(c.get("displayName") or "").startswith(SECRET_MARKER) and (parse_time(c.get("endDateTime")) or stamp) > stamp]
        return {"app": app, "ours": ours}

    def decide(self, ctx: StepContext, current: dict[str, Any]) -> PlannedStep:
        days = ctx.request.secret_lifetime_days
        lost = bool(ctx.data.get("secret_intent")) and not ctx.data.get("secret_key_id")  # this job's attempt died mid-call
        # a secret this request retires is replaced by one new secret, made once
        rotate = any(kind == "password" for kind in ctx.request.retire[:1]) and not ctx.data.get("secret_key_id")
        if current["ours"] and not ctx.data.get("force_new_secret") and not lost and not rotate:
            newest = max(current["ours"], key=lambda c: c.get("endDateTime") or "")
            return PlannedStep(self.name, StepAction.NO_CHANGE, "A client secret made by this bot exists",
                               (), (f"expires {newest.get('endDateTime')}; it is not shown again",))
        return PlannedStep(self.name, StepAction.CREATE, f"Create a client secret valid for {days} days",
                           (Change("passwordCredential.endDateTime", None, f"now + {days} days"),),
                           ("shown privately to the requester only, until they say they copied it; never posted to the chat",))

    async def act(self, ctx: StepContext, current: dict[str, Any]) -> dict[str, str]:
        object_id = ctx.data["app_object_id"]
        created_at = parse_time(ctx.data.get("app_created_at"))
        pending = ctx.data.get("secret_intent")
        if pending and not ctx.data.get("secret_key_id"):
            await self._remove_lost(ctx, object_id, pending)
        attempt = int(ctx.data.get("secret_attempts", 0)) + 1
        name = f"{marker(ctx.job_id)} #{attempt}"
        await ctx.remember(secret_intent={"name": name, "at": now().isoformat()}, secret_attempts=attempt, secret_key_id=None)
        end = now() + timedelta(days=ctx.request.secret_lifetime_days)
        cred = await ctx.graph.add_password(object_id, display_name=name, end=end, created_at=created_at, step=self.name.value, on_retry=ctx.on_retry)
        ctx.forget("app")
        secret = str(cred.pop("secretText"))
        data = dict(ctx.data) | {"secret_key_id": cred["keyId"], "secret_hint": cred.get("hint"), "secret_end": cred.get("endDateTime"),
                                 "secret_intent": None, "force_new_secret": False}
        assert ctx.seal_secret is not None, "a job context seals secrets"
        await ctx.seal_secret(cred["keyId"], secret, data)
        ctx.data.update(data)
        del secret
        return {"secret_expires": str(cred.get("endDateTime"))}  # not even Graph's three-character hint goes to a chat

    async def _remove_lost(self, ctx: StepContext, object_id: str, pending: dict[str, Any]) -> None:
        """A previous attempt may have made a secret whose text was lost in a crash: find and remove it.

        A new password can be missing from reads while it replicates, so wait out the settle time after the
        attempt before trusting the list."""
        started = parse_time(pending.get("at")) or now()
        settle = ctx.settings.replication_settle.total_seconds()
        wait = settle - (now() - started).total_seconds()
        if wait > 0:
            await (ctx.sleep or asyncio.sleep)(wait)
        app = await ctx.graph.get_application(object_id, select=("id", "passwordCredentials"), step=self.name.value, on_retry=ctx.on_retry)
        job_marker = marker(ctx.job_id)
        for cred in app.get("passwordCredentials") or []:
            if str(cred.get("displayName") or "").startswith(job_marker):
                await ctx.graph.remove_password(object_id, cred["keyId"], step=self.name.value)

    def outputs(self, ctx: StepContext, current: dict[str, Any]) -> dict[str, str]:
        if not current["ours"]:
            return {}
        newest = max(current["ours"], key=lambda c: c.get("endDateTime") or "")
        return {"secret_expires": str(newest.get("endDateTime"))}
