"""The Copilot Studio agents in the configured environments: listed for the choice card, resolved for a plan."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from .core import Core
from .models import AgentSummary, SetupRequest


def summary(url: str, bot: dict[str, Any], environment_name: str) -> AgentSummary:
    return AgentSummary(environment_url=url, bot_id=bot["botid"], name=bot["name"], schema_name=bot["schemaname"],
                        authentication_mode=bot.get("authenticationmode"), published_on=bot.get("publishedon"),
                        environment_name=environment_name)


class Agents:
    def __init__(self, core: Core) -> None:
        self.core = core
        self._listed: tuple[float, list[AgentSummary]] | None = None
        self._reading: asyncio.Task[list[AgentSummary]] | None = None

    async def listing(self) -> list[AgentSummary]:
        """The agents in every configured environment, at most AGENT_LIST_MAX_AGE old.

        Every `/setup copilot` shows this list, so it is read once and shared: concurrent callers wait for the same
        Dataverse read. A plan always re-reads its agent, so a list a few seconds old never decides what changes.
        """
        now = time.monotonic()
        if self._listed is not None and now - self._listed[0] < self.core.settings.agent_list_max_age.total_seconds():
            return list(self._listed[1])
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read())
        return list(await asyncio.shield(self._reading))

    def forget(self) -> None:
        """Drop the cached list (an agent was changed here), so the next listing reads Dataverse."""
        self._listed = None

    async def _read(self) -> list[AgentSummary]:
        started = time.monotonic()
        clients = list(self.core.dataverse.values())
        bots, orgs = await asyncio.gather(asyncio.gather(*(c.list_bots() for c in clients)), asyncio.gather(*(c.organization() for c in clients)))
        agents = [summary(c.environment_url, b, org[1]) for c, found, org in zip(clients, bots, orgs, strict=True) for b in found]
        order = {url: i for i, url in enumerate(self.core.settings.dataverse_urls)}  # environments in DATAVERSE_URL's order
        agents.sort(key=lambda a: (order.get(a.environment_url, len(order)), a.name.lower()))
        self._listed = (started, agents)
        return agents

    async def resolve(self, request: SetupRequest) -> tuple[AgentSummary | None, dict[str, Any] | None]:
        client = self.core.dataverse[request.agent.environment_url.rstrip("/")]
        bot, (_org_id, name) = await asyncio.gather(client.find_bot(schema_name=request.agent.schema_name, bot_id=request.agent.bot_id),
                                                    client.organization())
        if bot is None:
            return None, None
        return summary(client.environment_url, bot, name), bot
