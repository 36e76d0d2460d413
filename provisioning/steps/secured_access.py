"""Guided step: web channel "Require secured access". No API can set or read it. The operator turns it
on; the job records when, and reminds when the propagation delay (up to 2 hours) has passed."""

from __future__ import annotations

from typing import Any

from ..models import GuidedInstructions, PlannedStep, SetupRequest, StepAction, StepName
from .base import COPILOT_STUDIO, Step, StepContext, Verification


class SecuredAccess(Step):
    name = StepName.SECURED_ACCESS
    guided = True

    def applies(self, request: SetupRequest) -> bool:
        return request.require_secured_access

    async def read(self, ctx: StepContext) -> dict[str, Any]:
        return {}

    def decide(self, ctx: StepContext, current: dict[str, Any]) -> PlannedStep:
        delay = ctx.settings.propagation_delay
        return PlannedStep(self.name, StepAction.MANUAL, "You turn on 'Require secured access' for the web channel",
                           (), (f"takes up to {_human(delay.total_seconds())} to take effect; until then the old setting applies. The bot reminds you then.",))

    def instructions(self, ctx: StepContext) -> GuidedInstructions:
        return GuidedInstructions(
            title="Require secured access for the web channel",
            steps=(
                f"In Copilot Studio, open the agent '{ctx.agent.name}', then Settings → Security → Web channel security.",
                "Turn on 'Require secured access'.",
                "Come back here and select Done. No Microsoft API can read this setting, so the bot records the time you confirm.",
                f"It takes up to {_human(ctx.settings.propagation_delay.total_seconds())} to take effect; until then the old setting applies. "
                "You don't need to publish for this change.",
            ),
            links=(("Open Copilot Studio", COPILOT_STUDIO),),
        )

    async def verify(self, ctx: StepContext) -> Verification:
        return Verification(True, "Confirmed by the operator (no API can read this setting).")


def _human(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        hours = int(seconds // 3600)
        return f"{hours} hour{'s' if hours != 1 else ''}"
    if seconds >= 60 and seconds % 60 == 0:
        minutes = int(seconds // 60)
        return f"{minutes} minute{'s' if minutes != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"
