"""Day two: after a rotation, remove the credential the new one replaces — only once the new one is entered in
Copilot Studio, verified and published (this step runs after publish), so sign-in never breaks in between."""

from __future__ import annotations

from typing import Any

from ..models import AgentSummary, PlannedStep, SetupRequest, StepAction, StepName
from .base import Step, StepContext, Verification


class RetireCredential(Step):
    name = StepName.RETIRE_CREDENTIAL

    def applies(self, request: SetupRequest) -> bool:
        return bool(request.retire)

    def skip_reason(self, request: SetupRequest, agent: AgentSummary) -> str:
        return "no credential is replaced"

    async def _present(self, ctx: StepContext) -> bool:
        kind, ident = ctx.request.retire[0], ctx.request.retire[1]
        app = await ctx.application(self.name.value)
        if app is None:
            return False
        if kind == "password":
            creds = app.get("passwordCredentials") or []
            return any(str(c.get("keyId")) == ident for c in creds)
        found = await ctx.graph.federated_credentials(str(app["id"]), step=self.name.value)
        return any(str(c.get("id")) == ident for c in found)

    async def read(self, ctx: StepContext) -> dict[str, Any]:
        return {"present": await self._present(ctx)}

    def decide(self, ctx: StepContext, current: dict[str, Any]) -> PlannedStep:
        what = ctx.request.retire[2] if len(ctx.request.retire) > 2 else "the old credential"
        if not current["present"]:
            return PlannedStep(self.name, StepAction.NO_CHANGE, f"{what[0].upper() + what[1:]} is gone already")
        return PlannedStep(self.name, StepAction.DELETE, f"Remove {what} once the new credential works",
                           notes=("it stays until Copilot Studio uses the new one (checked and published), so sign-in never breaks",))

    async def act(self, ctx: StepContext, current: dict[str, Any]) -> dict[str, str]:
        kind, ident = ctx.request.retire[0], ctx.request.retire[1]
        object_id = str(ctx.data["app_object_id"])
        if kind == "password":
            await ctx.graph.remove_password(object_id, ident, step=self.name.value)
        else:
            await ctx.graph.delete_federated_credential(object_id, ident, step=self.name.value)
        ctx.forget("app")
        return {"removed": f"{kind} {ident}"}

    async def verify(self, ctx: StepContext) -> Verification:
        ctx.forget("app")
        if await self._present(ctx):
            return Verification(False, "Microsoft Entra still shows the old credential.")
        return Verification(True, "Microsoft Entra no longer shows the old credential.")
