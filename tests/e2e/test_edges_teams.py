"""Edges seen from Teams, over real HTTP: posts Teams refuses (for now, and for good), cancel that cancels, and who
may end a setup in a shared chat."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from provisioning import JobStatus
from tests.fixtures.connector import Connector
from tests.fixtures.teams import AVERY, MALLORY, RILEY, channel_thread, personal

from .helpers import Conversation
from .test_jobs import approved_setup


def card_with(words: str) -> Any:
    return lambda method, body: method == "POST" and any(words in json.dumps(a.get("content")) for a in body.get("attachments") or [])


async def _through_secured_access(talk: Conversation, mark: int) -> int:
    guided = await talk.expect("Your turn: Copilot Studio: authenticate manually", after=mark)
    await talk.click(RILEY, guided, "Do it in the sandbox (emulated Copilot Studio)")
    secured = await talk.expect("Your turn: Web channel: require secured access", after=mark)
    return await talk.click(RILEY, secured, "Do it in the sandbox (emulated Copilot Studio)")


async def test_a_reminder_teams_refuses_for_a_while_still_arrives_once(running_bot, connector: Connector) -> None:  # type: ignore[no-untyped-def]
    """Edges #5: errors inside continue_conversation were swallowed, so four 503s on the reminder post moved the cursor
    on and lost the reminder for good. Now the post is tried again with backoff until Teams takes it."""
    connector.fail_matching.append((card_with("Secured access is now in effect"), [503] * 6))
    talk, mark, _ = await approved_setup(running_bot, connector, personal(RILEY))
    mark = await _through_secured_access(talk, mark)
    await talk.expect("Secured access is now in effect", after=mark, timeout=40)
    assert len([s for s, _ in connector.refused if s == 503]) == 6, "Teams refused it six times first"
    await talk.expect("is set up", after=mark, timeout=30)
    assert len([c for c in connector.calls if "Secured access is now in effect" in c.text]) == 1


async def test_a_card_teams_refuses_for_good_is_a_dead_letter_that_status_shows(running_bot, connector: Connector) -> None:  # type: ignore[no-untyped-def]
    connector.fail_matching.append((card_with("is set up"), [403]))  # the bot was removed from the chat, say
    talk, mark, progress = await approved_setup(running_bot, connector, personal(RILEY), require_secured=False)
    guided = await talk.expect("Your turn: Copilot Studio: authenticate manually", after=mark)
    await talk.click(RILEY, guided, "Do it in the sandbox (emulated Copilot Studio)")
    await talk.expect("Setting up 'Contoso Support': Done", after=mark, method="PUT", timeout=30)
    job = (await running_bot.service.list_jobs())[0]
    assert job.status == JobStatus.COMPLETED
    for _ in range(200):  # Teams has refused the completion card, and the bot has recorded that
        record = await running_bot.app.notifier.conversations.get(job.id)
        if record.dead_letters:
            break
        await asyncio.sleep(0.05)
    mark = await talk.say(RILEY, "status")
    status = await talk.expect("Setups in this conversation", after=mark)
    assert "Teams refused the completion card for good (403" in status.text, status.cards
    record = await running_bot.app.notifier.conversations.get(job.id)
    assert [d["what"] for d in record.dead_letters] == ["completion card"] and record.delivered_seq > 0, "the cursor moved past it"


async def test_cancel_from_the_progress_card_removes_what_the_setup_made(running_bot, connector: Connector) -> None:  # type: ignore[no-untyped-def]
    talk, mark, progress = await approved_setup(running_bot, connector, personal(RILEY))
    await talk.expect("Your turn: Copilot Studio: authenticate manually", after=mark)
    mark = await talk.click(MALLORY, progress, "Cancel setup")
    await talk.expect("You can't do that", after=mark)
    mark = await talk.click(RILEY, progress, "Cancel setup")
    cancelled = await talk.expect("Setting up 'Contoso Support': Cancelled", after=mark, method="PUT", timeout=30)
    await talk.expect("✓ the app registration", after=mark, method="PUT", timeout=30)
    assert not [a for c in cancelled.cards for a in c.get("actions", [])], "nothing left to click on a cancelled setup"
    job = (await running_bot.service.list_jobs())[0]
    assert job.status == JobStatus.CANCELLED


async def test_in_a_channel_only_the_requester_or_an_approver_ends_a_setup(bot_factory, connector: Connector) -> None:  # type: ignore[no-untyped-def]
    """Edges #8: anyone's `cancel` or `setup copilot` ended the requester's setup questions in a shared chat."""
    bot = await bot_factory(SETUP_APPROVERS=AVERY.aad)
    talk = Conversation(bot, connector, channel_thread())
    mark = await talk.say(RILEY, "setup copilot", mention=True)
    choose = await talk.expect("Set up an agent: 1 of 2", after=mark)
    mark = await talk.say(MALLORY, "cancel", mention=True)
    await talk.expect("This setup is someone else's", after=mark)
    mark = await talk.say(MALLORY, "setup copilot", mention=True)
    await talk.expect("Riley Requester is setting up an agent here", after=mark)
    assert not [c for c in connector.calls[mark:] if "Set up an agent: 1 of 2" in c.text], "no new setup over Riley's"
    mark = await talk.click(RILEY, choose, "Next")
    await talk.expect("Set up an agent: 2 of 2", after=mark)  # Riley's setup goes on
    mark = await talk.say(AVERY, "cancel", mention=True)
    await talk.expect("I stopped the setup questions", after=mark)
    refused = [e for e in await bot.service.store.jobs.audit_log(None) if e["action"] == "refused"]
    assert {e["detail"]["attempted"] for e in refused if e["actor"]["id"] == MALLORY.aad} == {"setup.cancel", "setup.replace"}
