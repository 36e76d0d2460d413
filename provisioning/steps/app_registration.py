"""Step 1: the Entra app registration, upserted by a deterministic uniqueName (never a second one)."""

from __future__ import annotations

from typing import Any

from ..errors import ForeignObjectError
from ..graph import GRAPH_APP_ID
from ..models import Change, PlannedStep, SetupRequest, StepAction, StepName
from .base import Step, StepContext, now, parse_time

OPENID = "37f7f235-527c-4136-accd-4a02d197296e"
PROFILE = "14dad69e-099b-42c9-810b-d002981feec1"


def desired(request: SetupRequest) -> dict[str, Any]:
    """The application body: exactly what the plan shows and the upsert sends."""
    return {
        "displayName": request.app_display_name.strip(),
        "signInAudience": request.sign_in_audience,
        "web": {
            "redirectUris": list(request.redirect_uris),
            "implicitGrantSettings": {
                "enableAccessTokenIssuance": request.implicit_grant_access_tokens,
                "enableIdTokenIssuance": request.implicit_grant_id_tokens,
            },
        },
        "requiredResourceAccess": [
            {"resourceAppId": GRAPH_APP_ID, "resourceAccess": [{"id": OPENID, "type": "Scope"}, {"id": PROFILE, "type": "Scope"}]}
        ],
    }


def _flat(app: dict[str, Any] | None) -> dict[str, Any]:
    if app is None:
        return {}
    web = app.get("web") or {}
    grant = web.get("implicitGrantSettings") or {}
    scopes = sorted(
        ra["id"] for r in app.get("requiredResourceAccess") or [] if r.get("resourceAppId") == GRAPH_APP_ID
        for ra in r.get("resourceAccess") or []
    )
    return {
        "displayName": app.get("displayName"),
        "signInAudience": app.get("signInAudience"),
        "web.redirectUris": list(web.get("redirectUris") or []),
        "web.implicitGrantSettings.enableAccessTokenIssuance": grant.get("enableAccessTokenIssuance"),
        "web.implicitGrantSettings.enableIdTokenIssuance": grant.get("enableIdTokenIssuance"),
        "requiredResourceAccess (Microsoft Graph)": ["openid" if s == OPENID else "profile" if s == PROFILE else s for s in scopes],
    }


class AppRegistration(Step):
    name = StepName.APP_REGISTRATION

    async def read(self, ctx: StepContext) -> dict[str, Any]:
        app = await ctx.application(self.name.value)
        if app is not None:
            await self.check_ours(ctx, app)
        return {"app": app}

    async def check_ours(self, ctx: StepContext, app: dict[str, Any]) -> None:
        """Change only an app registration this bot's provisioning identity owns. With Application.ReadWrite.OwnedBy
        Graph shows no other; with Application.ReadWrite.All someone else's app with the same uniqueName is visible."""
        owners = await ctx.cached(f"owners:{app['id']}", lambda: ctx.graph.owner_app_ids(
            str(app["id"]), created_at=parse_time(ctx.data.get("app_created_at")), step=self.name.value))
        if ctx.settings.client_id not in owners:
            raise ForeignObjectError(
                f"An app registration with this setup's uniqueName ({ctx.unique_name}) exists, '{app.get('displayName')}' "
                f"(client ID {app.get('appId')}), but it was not made by this bot's provisioning identity, so it was not changed.",
                action="Make the provisioning app an owner of it if it is yours to manage (Entra admin center → App registrations → "
                       "Owners), or delete it, then start the setup again.", step=self.name.value)

    def decide(self, ctx: StepContext, current: dict[str, Any]) -> PlannedStep:
        want = _flat(desired(ctx.request))
        have = _flat(current["app"])
        changes = tuple(Change(k, have.get(k), v) for k, v in want.items() if have.get(k) != v)
        if current["app"] is None:
            return PlannedStep(self.name, StepAction.CREATE, f"Create app registration '{want['displayName']}' ({ctx.request.sign_in_audience})",
                               changes, (f"uniqueName {ctx.unique_name} keeps re-runs from making a second one",))
        if changes:
            return PlannedStep(self.name, StepAction.UPDATE, f"Update app registration '{current['app'].get('displayName')}'", changes,
                               (f"client ID {current['app'].get('appId')}",))
        return PlannedStep(self.name, StepAction.NO_CHANGE, f"App registration '{want['displayName']}' is already as requested",
                           (), (f"client ID {current['app'].get('appId')}",))

    async def act(self, ctx: StepContext, current: dict[str, Any]) -> dict[str, str]:
        started = now()
        created, app = await ctx.graph.upsert_application(ctx.unique_name, desired(ctx.request), step=self.name.value, on_retry=ctx.on_retry)
        ctx.forget("app")
        if not created and current["app"] is not None:
            await self.check_ours(ctx, current["app"])
        if created and app is not None:
            ctx.know("app", app)  # Graph answers a create with the whole new application
        if app is None:  # 204: it existed; the ids come from a read (retried through replication delay)
            app = current["app"]
            if app is None:
                response = await ctx.graph.http.request(
                    "GET", f"v1.0/applications(uniqueName='{ctx.unique_name}')", created_at=started, step=self.name.value, on_retry=ctx.on_retry,
                )
                app = dict(response.body)
        created_at = app.get("createdDateTime") if created else ctx.data.get("app_created_at") or app.get("createdDateTime")
        made = created or bool(ctx.data.get("app_created_by_job"))  # what a cancel removes
        await ctx.remember(app_object_id=app["id"], app_id=app["appId"], app_created_at=created_at or started.isoformat(), app_created_by_job=made)
        return self.outputs(ctx, {"app": app})

    async def adopt(self, ctx: StepContext, current: dict[str, Any]) -> None:
        app = current["app"] or {}
        if app.get("id") and (ctx.data.get("app_object_id") != app["id"] or not ctx.data.get("app_created_at")):
            await ctx.remember(app_object_id=app["id"], app_id=app.get("appId"),
                               app_created_at=ctx.data.get("app_created_at") or app.get("createdDateTime") or now().isoformat())

    def outputs(self, ctx: StepContext, current: dict[str, Any]) -> dict[str, str]:
        app = current["app"] or {}
        return {"client_id": str(app.get("appId", "")), "object_id": str(app.get("id", "")), "unique_name": ctx.unique_name}
