"""Conversation helpers for end-to-end tests: say something, find the card, click a button."""

from __future__ import annotations

import json
from typing import Any

from tests.fixtures.connector import Call, Connector, card_titled
from tests.fixtures.teams import Chat, User, message, submit


def action(call: Call, title: str) -> dict[str, Any]:
    for card in call.cards:
        for act in card.get("actions", []):
            if act.get("title") == title:
                return dict(act)
    raise AssertionError(f"no button '{title}' on {[a.get('title') for c in call.cards for a in c.get('actions', [])]}")


def inputs(call: Call) -> dict[str, Any]:
    """The values the card's inputs would submit as they are shown."""
    values: dict[str, Any] = {}

    def walk(elements: list[dict[str, Any]]) -> None:
        for e in elements:
            if e.get("type", "").startswith("Input.") and "id" in e:
                values[e["id"]] = e.get("value", "")
            walk(e.get("items", []))

    for card in call.cards:
        walk(card.get("body", []))
    return values


class Conversation:
    def __init__(self, bot: Any, connector: Connector, chat: Chat) -> None:
        self.bot, self.connector, self.chat = bot, connector, chat

    async def say(self, user: User, text: str, *, mention: bool = False) -> int:
        mark = len(self.connector.calls)
        status, _ = await self.bot.client.post(message(self.chat, user, self.connector.url, text, mention=mention))
        assert status in (200, 201), status
        return mark

    async def expect(self, words: str, *, after: int = 0, method: str | None = None, timeout: float = 20.0) -> Call:
        return await self.connector.wait_for(
            lambda c: c.conversation_id == self.chat.id and (method is None or c.method == method) and card_titled(words)(c),
            after=after, timeout=timeout)

    async def click(self, user: User, call: Call, title: str, **values: Any) -> int:
        act = action(call, title)
        mark = len(self.connector.calls)
        data = dict(act.get("data") or {})
        if act["type"] == "Action.Submit" and act.get("associatedInputs") != "none":
            data = {**inputs(call), **data}
        data.update(values)
        activity_id = call.new_id if call.method != "PUT" else call.activity_id
        status, _ = await self.bot.client.post(submit(self.chat, user, self.connector.url, activity_id, data))
        assert status in (200, 201), status
        return mark


def secret_leaks(secret: str, *texts: str) -> list[str]:
    return [t[:80] for t in texts if secret in t]


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)
