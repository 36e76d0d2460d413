"""Guided step: web channel "Require secured access". No API can set or read it. The operator turns it
on; the job records when, and reminds when the propagation delay (up to 2 hours) has passed."""

from __future__ import annotations

from typing import Any

from ..dates import duration
from ..models import SETUP, AgentSummary, GuidedInstructions, PlannedStep, SetupRequest, StepAction, StepName
from .base import COPILOT_STUDIO, Step, StepContext, Verification, copilot_link


class SecuredAccess(Step):
    name = StepName.SECURED_ACCESS
    guided = True

    def applies(self, request: SetupRequest) -> bool:
        return request.require_secured_access and request.purpose == SETUP

    def skip_reason(self, request: SetupRequest, agent: AgentSummary) -> str:
        return "not part of this change (it was confirmed when the agent was set up)" if request.purpose != SETUP else "not requested"

    async def read(self, ctx: StepContext) -> dict[str, Any]:
        return {}

    def decide(self, ctx: StepContext, current: dict[str, Any]) -> PlannedStep:
        delay = ctx.settings.propagation_delay
        notes = [f"takes up to {duration(delay.total_seconds())} to take effect; until then the old setting applies. The bot reminds you then."]
        previous = ctx.data.get("previous_secured_access")
        if previous:
            notes.append(f"confirmed before for this agent by {previous['by']} ({previous['at_text']}); you may keep that "
                         "confirmation instead of waiting out the window again")
        return PlannedStep(self.name, StepAction.MANUAL, "You turn on 'Require secured access' for the web channel", (), tuple(notes))

    def instructions(self, ctx: StepContext) -> GuidedInstructions:
        return GuidedInstructions(
            title="Require secured access for the web channel",
            steps=(
                f"In Copilot Studio, open the agent '{ctx.agent.name}', then Settings → Security → Web channel security.",
                "Turn on 'Require secured access'.",
                "Come back here and select 'Done, check it'. No Microsoft API can read this setting, so the bot records the time you confirm.",
                f"It takes up to {duration(ctx.settings.propagation_delay.total_seconds())} to take effect; until then the old setting applies. "
                "You don't need to publish for this change.",
            ),
            links=(("Open Copilot Studio", copilot_link(ctx.agent.bot_id, ctx.portal_url) if ctx.portal_url else COPILOT_STUDIO),),
            previous=(previous["at_text"], previous["by"]) if (previous := ctx.data.get("previous_secured_access")) else (),
        )

    async def verify(self, ctx: StepContext) -> Verification:
        return Verification(True, "Confirmed by the operator (no API can read this setting).")

