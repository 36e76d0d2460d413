"""Optional step: the app's service principal in this tenant."""

from __future__ import annotations

from typing import Any

from ..errors import MicrosoftApiError
from ..models import Change, PlannedStep, SetupRequest, StepAction, StepName
from .base import Step, StepContext, parse_time


class ServicePrincipal(Step):
    name = StepName.SERVICE_PRINCIPAL

    def applies(self, request: SetupRequest) -> bool:
        return request.create_service_principal

    async def read(self, ctx: StepContext) -> dict[str, Any]:
        app_id = ctx.data.get("app_id")
        if not app_id:
            app = await ctx.graph.get_application_by_unique_name(ctx.unique_name, step=self.name.value)
            app_id = app.get("appId") if app else None
        sp = await ctx.graph.get_service_principal(app_id, step=self.name.value) if app_id else None
        return {"sp": sp}

    def decide(self, ctx: StepContext, current: dict[str, Any]) -> PlannedStep:
        if current["sp"]:
            return PlannedStep(self.name, StepAction.NO_CHANGE, "The service principal exists")
        return PlannedStep(self.name, StepAction.CREATE, "Create the app's service principal in this tenant",
                           (Change("servicePrincipal.appId", None, "the new client ID"),))

    async def act(self, ctx: StepContext, current: dict[str, Any]) -> dict[str, str]:
        try:
            sp = await ctx.graph.create_service_principal(
                ctx.data["app_id"], created_at=parse_time(ctx.data.get("app_created_at")), step=self.name.value, on_retry=ctx.on_retry
            )
        except MicrosoftApiError as exc:
            if exc.status != 409:
                raise
            sp = await ctx.graph.get_service_principal(ctx.data["app_id"], step=self.name.value) or {}
        await ctx.remember(service_principal_id=sp.get("id"))
        return {"service_principal_id": str(sp.get("id", ""))}

    def outputs(self, ctx: StepContext, current: dict[str, Any]) -> dict[str, str]:
        return {"service_principal_id": str((current["sp"] or {}).get("id", ""))}
