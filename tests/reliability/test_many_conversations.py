"""Many conversations at once, each with its own dialog: every turn answered, nothing lost or crossed.

200 conversations (2,000 with --soak) go through the first part of the setup dialog concurrently over real HTTP:
`/setup copilot` → choose an agent (each conversation its own) → the details card must be for that agent →
Cancel. The bot's SQLite state must then hold no dialog left open, and no conversation may see another's card.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from typing import Any

from bot import state_codec
from tests.e2e.helpers import action, inputs
from tests.fixtures.connector import Call, Connector
from tests.fixtures.teams import User, message, personal, submit


class Inbox:
    """The connector's calls per conversation, so 200 waiters don't each rescan every call."""

    def __init__(self, connector: Connector) -> None:
        self.connector = connector
        self.seen = 0
        self.by_conversation: dict[str, list[Call]] = defaultdict(list)

    async def next_card(self, conversation: str, count: int, timeout: float = 60.0) -> Call:
        deadline = time.monotonic() + timeout
        while True:
            calls = self.connector.calls
            for call in calls[self.seen:]:
                self.by_conversation[call.conversation_id].append(call)
            self.seen = len(calls)
            mine = self.by_conversation[conversation]
            if len(mine) > count:
                return mine[count]
            if time.monotonic() > deadline:
                raise AssertionError(f"conversation {conversation} got no card #{count + 1}; it has {[c.text[:80] for c in mine]}")
            await asyncio.sleep(0.01)


def _title(call: Call) -> str:
    body = call.cards[0]["body"] if call.cards else []
    return " / ".join(str(e.get("text", "")) for e in body[:2])


async def _one(bot: Any, inbox: Inbox, url: str, n: int, errors: list[str]) -> str:
    user = User(f"{n:08d}-aaaa-4aaa-8aaa-{n:012d}", f"User {n}")
    chat = personal(user)

    async def post(body: dict[str, Any]) -> None:
        status, answer = await bot.client.post(body)
        if status >= 300:
            errors.append(f"{chat.id}: HTTP {status} {answer}")

    await post(message(chat, user, url, "/setup copilot"))
    choose = await inbox.next_card(chat.id, 0)
    assert "1 of 2" in _title(choose), _title(choose)
    choices = next(e for e in choose.cards[0]["body"] if e.get("id") == "agent")["choices"]
    pick = choices[n % len(choices)]
    await post(submit(chat, user, url, choose.new_id, {**inputs(choose), **action(choose, "Next")["data"], "agent": pick["value"]}))
    details = await inbox.next_card(chat.id, 1)
    assert "2 of 2" in _title(details) and pick["title"].split(" (")[0] in details.text, (pick, _title(details))
    await post(submit(chat, user, url, details.new_id, dict(action(details, "Cancel")["data"])))
    cancelled = await inbox.next_card(chat.id, 2)
    assert "Cancelled" in _title(cancelled), _title(cancelled)
    return chat.id


async def test_concurrent_conversations_keep_their_own_dialogs(bot_factory, connector: Connector, soak: bool, figures) -> None:  # type: ignore[no-untyped-def]
    count = 2000 if soak else 200
    bot = await bot_factory()
    inbox = Inbox(connector)
    errors: list[str] = []
    started = time.monotonic()
    chats = await asyncio.gather(*(_one(bot, inbox, connector.url, n, errors) for n in range(count)))
    seconds = time.monotonic() - started
    assert errors == []
    assert len(set(chats)) == count
    for chat in chats:  # nothing else was posted to any conversation
        assert len(inbox.by_conversation[chat]) == 3, [c.text[:80] for c in inbox.by_conversation[chat]]

    kv = bot.app.store.kv
    keys = await kv.keys("msteams/conversations/")
    assert {f"msteams/conversations/{chat}" for chat in chats} <= set(keys)
    stored = await kv.read(keys)
    for chat in chats:
        state = state_codec.loads(stored[f"msteams/conversations/{chat}"][1])
        assert state["DialogState"].dialog_stack == [], chat
    figures(conversations=count, turns=count * 3, errors=len(errors), seconds=round(seconds, 2), turns_per_s=round(count * 3 / seconds, 1))
