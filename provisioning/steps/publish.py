"""Step: publish the agent (PvaPublish), then poll until Dataverse shows the publish finished.

Microsoft's own tooling polls every 10 s for up to 300 s (PUBLISH_POLL_INTERVAL, PUBLISH_TIMEOUT)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from ..dataverse import memo
from ..errors import MicrosoftApiError, ServiceUnavailableError
from ..models import Change, PlannedStep, StepAction, StepName
from .base import Step, StepContext, Verification


def published_auth_mode(bot: dict[str, Any]) -> str:
    return str((memo(bot.get("synchronizationstatus")).get("lastPublishedDetails") or {}).get("authenticationMode") or "")


def last_publish(bot: dict[str, Any]) -> tuple[str, str]:
    op = memo(bot.get("synchronizationstatus")).get("lastFinishedPublishOperation") or {}
    return str(op.get("status") or ""), str(op.get("operationEnd") or "")


class Publish(Step):
    name = StepName.PUBLISH

    async def read(self, ctx: StepContext) -> dict[str, Any]:
        return {"bot": await ctx.agent_bot(self.name.value)}

    def decide(self, ctx: StepContext, current: dict[str, Any]) -> PlannedStep:
        mode = published_auth_mode(current["bot"])
        if mode == "CustomAzureActiveDirectory" and not ctx.data.get("needs_new_auth"):
            return PlannedStep(self.name, StepAction.NO_CHANGE, "The published agent already uses manual authentication")
        if mode == "CustomAzureActiveDirectory":
            return PlannedStep(self.name, StepAction.UPDATE, "Publish the agent again so the new credential takes effect",
                               (), ("the published agent already uses manual authentication",))
        return PlannedStep(self.name, StepAction.UPDATE, "Publish the agent so the authentication change takes effect",
                           (Change("published authentication", mode or None, "CustomAzureActiveDirectory"),))

    async def act(self, ctx: StepContext, current: dict[str, Any]) -> dict[str, str]:
        # Done when the last finished publish operation is a different one than before we asked: no clock comparison
        # between this machine and Dataverse, so clock skew cannot fool it.
        if ctx.data.get("publish_baseline") is None:
            await ctx.remember(publish_baseline=last_publish(current["bot"])[1], publish_sent=False)
        if not ctx.data.get("publish_sent"):  # publishing again is harmless, so a crash before this point just resends
            try:
                await ctx.dataverse.publish(ctx.agent.bot_id, step=self.name.value, on_retry=ctx.on_retry)
            except MicrosoftApiError as exc:
                if exc.status != 409:  # 409: a publish is already running (ours, before a restart); wait for it
                    await ctx.remember(publish_baseline=None)
                    raise
            await ctx.remember(publish_sent=True)
        ctx.forget("bot")
        baseline = ctx.data["publish_baseline"]
        interval = ctx.settings.publish_poll_interval.total_seconds()
        deadline = time.monotonic() + ctx.settings.publish_timeout.total_seconds()
        sleep = ctx.sleep or asyncio.sleep
        while True:
            bot = await ctx.dataverse.get_bot(ctx.agent.bot_id, step=self.name.value)
            status, ended = last_publish(bot)
            if ended and ended != baseline:
                ctx.know("bot", bot)  # read after the publish finished: what verify needs
                await ctx.remember(publish_baseline=None, publish_sent=False)
                if status != "Succeeded":
                    raise ServiceUnavailableError(f"Publishing finished with status '{status}'.", status=0, service="dataverse",
                                                  step=self.name.value, action="Open the agent in Copilot Studio to see why, fix it, then Retry.")
                return {"published_on": str(bot.get("publishedon") or ended)}
            if time.monotonic() > deadline:
                await ctx.remember(publish_baseline=None, publish_sent=False)
                raise ServiceUnavailableError(
                    f"Publishing did not finish within {ctx.settings.publish_timeout.total_seconds():.0f} s.", status=0,
                    service="dataverse", step=self.name.value, action="Check the agent in Copilot Studio, then Retry.",
                )
            await ctx.beat()
            await sleep(interval)

    async def verify(self, ctx: StepContext) -> Verification:
        bot = await ctx.agent_bot(self.name.value)
        mode = published_auth_mode(bot)
        if mode == "CustomAzureActiveDirectory":
            return Verification(True, "The published agent uses manual Microsoft Entra ID authentication.")
        return Verification(False, f"The published agent reports authentication '{mode or 'unknown'}'.")

    def outputs(self, ctx: StepContext, current: dict[str, Any]) -> dict[str, str]:
        return {"published_on": str(current["bot"].get("publishedon") or "")}
