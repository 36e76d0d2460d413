"""The ways a setup conversation goes wrong, as Teams would send them: each says why and changes nothing."""

from __future__ import annotations

import json

from tests.fixtures.connector import Connector
from tests.fixtures.teams import AVERY, MALLORY, RILEY, Chat, channel_thread, installed, personal, submit

from .helpers import Conversation, action


async def start(talk: Conversation, *, mention: bool = False, agent_prefix: str = "Contoso Support"):  # type: ignore[no-untyped-def]
    mark = await talk.say(RILEY, "setup   COPILOT" if mention else "/setup copilot", mention=mention)
    choose = await talk.expect("Set up an agent: 1 of 2", after=mark)
    choice = next(e for e in choose.cards[0]["body"] if e.get("id") == "agent")
    value = next(c["value"] for c in choice["choices"] if c["title"].startswith(agent_prefix))
    mark = await talk.click(RILEY, choose, "Next", agent=value)
    return await talk.expect("Set up an agent: 2 of 2", after=mark)


async def test_invalid_input_is_shown_next_to_its_field_with_values_kept(running_bot, connector: Connector) -> None:  # type: ignore[no-untyped-def]
    talk = Conversation(running_bot, connector, personal(RILEY))
    details = await start(talk)
    mark = await talk.click(RILEY, details, "Review plan", app_display_name="My app", redirect_uris="http://example.com/callback",
                            secret_lifetime_days="365", connect_customer_service="false")
    again = await talk.expect("Set up an agent: 2 of 2", after=mark)
    body = again.cards[0]["body"]
    index = next(i for i, e in enumerate(body) if e.get("id") == "redirect_uris")
    assert "https://" in body[index + 1]["text"] and body[index + 1]["color"] == "Attention"
    assert body[index]["value"] == "http://example.com/callback"
    assert next(e for e in body if e.get("id") == "app_display_name")["value"] == "My app"
    assert next(e for e in body if e.get("id") == "connect_customer_service")["value"] == "false"
    mark = await talk.click(RILEY, again, "Review plan", redirect_uris="https://token.botframework.com/.auth/web/redirect", secret_lifetime_days="730",
                            credential="client_secret")  # the lifetime only matters for a client secret
    policy = await talk.expect("Set up an agent: 2 of 2", after=mark)
    assert "at most 365 days" in json.dumps(policy.cards[0])


async def test_long_agent_name_and_cancel(running_bot, connector: Connector) -> None:  # type: ignore[no-untyped-def]
    talk = Conversation(running_bot, connector, personal(RILEY))
    details = await start(talk, agent_prefix="Contoso Returns")
    mark = await talk.click(RILEY, details, "Review plan", connect_customer_service="true")
    again = await talk.expect("Set up an agent: 2 of 2", after=mark)
    assert "over 30" in again.text
    mark = await talk.say(RILEY, "cancel")
    await talk.expect("I stopped the setup questions", after=mark)
    mark = await talk.click(RILEY, again, "Review plan", connect_customer_service="false")
    await talk.expect("That card is no longer active", after=mark)
    mark = await talk.say(RILEY, "cancel")
    await talk.expect("Nothing to cancel", after=mark)


async def test_channel_mention_second_approver_and_refusals(bot_factory, connector: Connector) -> None:  # type: ignore[no-untyped-def]
    bot = await bot_factory(REQUIRE_SECOND_APPROVER="true", SETUP_APPROVERS=f"{AVERY.aad},{RILEY.aad}")
    talk = Conversation(bot, connector, channel_thread())
    details = await start(talk, mention=True)
    mark = await talk.click(MALLORY, details, "Review plan")
    await talk.expect("This setup is someone else's", after=mark)
    mark = await talk.click(RILEY, details, "Review plan", connect_customer_service="false", require_secured_access="false")
    plan = await talk.expect("Plan for 'Contoso Support'", after=mark)
    assert "a second person must approve" in plan.text
    mark = await talk.click(RILEY, plan, "Approve")
    await talk.expect("You requested this setup, and a second person must approve it", after=mark)
    mark = await talk.click(MALLORY, plan, "Approve")
    await talk.expect("You are not one of the approvers", after=mark)
    forged = dict(action(plan, "Approve")["data"], card="forged-card-id")
    mark = len(connector.calls)
    await bot.client.post(submit(talk.chat, AVERY, connector.url, plan.new_id, forged))
    await talk.expect("That card is out of date", after=mark)
    assert not await bot.service.list_jobs()
    refused = [(e["actor"]["id"], e["detail"]["attempted"], e["detail"]["why"]) for e in await bot.service.store.jobs.audit_log(None)
               if e["action"] == "refused"]  # edges #9: every refusal is audited (who, what, which card, why)
    assert (MALLORY.aad, "setup.submit", "Only the person who started it can answer these cards. Type /setup copilot to start your own.") in refused
    assert any(who == RILEY.aad and what == "plan.approve" and "second person" in why for who, what, why in refused)
    assert any(who == MALLORY.aad and what == "plan.approve" and "not one of the approvers" in why for who, what, why in refused)
    assert any(who == AVERY.aad and "out of date" in why for who, _, why in refused)
    mark = await talk.click(AVERY, plan, "Approve")
    await talk.expect("Approved by Avery Approver", after=mark, method="PUT")
    await talk.expect("Setting up 'Contoso Support'", after=mark, method="POST")
    jobs = await bot.service.list_jobs()
    assert len(jobs) == 1 and jobs[0].approved_by.id == AVERY.aad and jobs[0].requested_by.id == RILEY.aad
    mark = await talk.click(AVERY, plan, "Approve")  # a replay of the same approval
    await talk.expect("no longer active", after=mark)
    assert len(await bot.service.list_jobs()) == 1


async def test_personal_chat_with_second_approver_says_where_to_go(bot_factory, connector: Connector) -> None:  # type: ignore[no-untyped-def]
    bot = await bot_factory(REQUIRE_SECOND_APPROVER="true")
    talk = Conversation(bot, connector, personal(RILEY))
    details = await start(talk)
    mark = await talk.click(RILEY, details, "Review plan")
    await talk.expect("A second approver is needed", after=mark)


async def test_unauthorised_requester_and_tenant(bot_factory, connector: Connector) -> None:  # type: ignore[no-untyped-def]
    bot = await bot_factory(SETUP_REQUESTERS=RILEY.aad, ALLOWED_TENANT_IDS="72f988bf-86f1-41af-91ab-2d7cd011db47")
    talk = Conversation(bot, connector, personal(MALLORY))
    mark = await talk.say(MALLORY, "/setup copilot")
    await talk.expect("You can't start a setup", after=mark)
    other = Conversation(bot, connector, Chat("a:other-tenant", tenant="00000000-0000-0000-0000-00000000beef"))
    mark = await other.say(RILEY, "/setup copilot")
    await other.expect("not enabled for your organization", after=mark)


async def test_welcome_help_status_and_unknown_text(running_bot, connector: Connector) -> None:  # type: ignore[no-untyped-def]
    talk = Conversation(running_bot, connector, personal(RILEY))
    mark = len(connector.calls)
    await running_bot.client.post(installed(talk.chat, RILEY, connector.url))
    welcome = await talk.expect("Copilot Setup Bot", after=mark)
    assert [a["title"] for a in welcome.cards[0]["actions"]] == ["Set up an agent", "Status"]
    mark = await talk.click(RILEY, welcome, "Status")
    await talk.expect("None yet", after=mark)
    mark = await talk.say(RILEY, "HELP")
    await talk.expect("What I can do", after=mark)
    mark = await talk.say(RILEY, "hello there")
    await talk.expect("I did not understand 'hello there'", after=mark)
    mark = await talk.click(RILEY, welcome, "Set up an agent")
    await talk.expect("Set up an agent: 1 of 2", after=mark)


async def test_restart_mid_dialog_continues_from_durable_state(bot_factory, connector: Connector) -> None:  # type: ignore[no-untyped-def]
    first = await bot_factory()
    talk = Conversation(first, connector, personal(RILEY))
    details = await start(talk)
    await first.runner.cleanup()
    second = await bot_factory()
    talk.bot = second
    mark = await talk.click(RILEY, details, "Review plan")
    await talk.expect("Plan for 'Contoso Support'", after=mark)
