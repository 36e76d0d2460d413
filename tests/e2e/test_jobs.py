"""Jobs seen from Teams: the secret hand-off, a failure and Retry, the reminder across a restart, no leaks."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest

from provisioning import StepName
from sandbox import FaultSettings, Sandbox
from tests.fixtures.connector import Connector
from tests.fixtures.teams import AVERY, MALLORY, RILEY, channel_thread, execute, personal, task_fetch

from .helpers import Conversation, action


async def approved_setup(bot, connector: Connector, chat, *, require_secured: bool = True, connect: bool = False,  # type: ignore[no-untyped-def]
                         credential: str = "client_secret"):
    talk = Conversation(bot, connector, chat)
    mark = await talk.say(RILEY, "setup copilot", mention=chat.kind != "personal")
    choose = await talk.expect("Set up an agent: 1 of 2", after=mark)
    choice = next(e for e in choose.cards[0]["body"] if e.get("id") == "agent")
    value = next(c["value"] for c in choice["choices"] if c["title"].startswith("Contoso Support"))
    mark = await talk.click(RILEY, choose, "Next", agent=value)
    details = await talk.expect("Set up an agent: 2 of 2", after=mark)
    mark = await talk.click(RILEY, details, "Review plan", require_secured_access=str(require_secured).lower(), connect_customer_service=str(connect).lower(),
                            credential=credential)
    plan = await talk.expect("Plan for 'Contoso Support'", after=mark)
    mark = await talk.click(AVERY if chat.kind != "personal" else RILEY, plan, "Approve")
    progress = await talk.expect("Setting up 'Contoso Support'", after=mark, method="POST")
    return talk, mark, progress


async def test_the_secret_stays_with_the_requester_until_they_copied_it(running_bot, connector: Connector) -> None:  # type: ignore[no-untyped-def]
    """Credential #4: the secret used to be replaced by "shown already" a quarter of a second after it was shown. Now
    it is shown to the requester only, as often as they ask, and the bot leaves that message alone until "I copied it"."""
    chat = channel_thread()
    talk, mark, _ = await approved_setup(running_bot, connector, chat)
    guided = await talk.expect("Your turn: Copilot Studio: authenticate manually", after=mark)
    reveal = action(guided, "Show client secret")
    client = running_bot.client
    status, mallory = await client.post(execute(chat, MALLORY, connector.url, guided.new_id, reveal["verb"], reveal["data"]))
    assert status == 200 and "Only the person who requested this setup" in json.dumps(mallory)
    status, approver = await client.post(execute(chat, AVERY, connector.url, guided.new_id, reveal["verb"], reveal["data"]))
    assert "Only the person who requested this setup" in json.dumps(approver)
    status, first = await client.post(task_fetch(chat, RILEY, connector.url, reveal["data"]))
    card = first["task"]["value"]["card"]["content"]
    secret = next(e["value"] for e in card["body"] if e.get("id") == "secret")
    shown_at = len(connector.calls)
    status, second = await client.post(execute(chat, RILEY, connector.url, guided.new_id, reveal["verb"], reveal["data"]))
    assert secret in json.dumps(second), "shown again, to the requester, until they say they copied it"
    await asyncio.sleep(1.5)  # the notifier has had every chance to touch the message
    assert not [c for c in connector.calls[shown_at:] if c.method == "PUT" and c.activity_id == guided.new_id], \
        "nothing replaces the message while the secret is on the requester's screen"
    copied = next(a for a in second["value"]["actions"] if a["title"] == "I copied it")
    status, after = await client.post(execute(chat, RILEY, connector.url, guided.new_id, copied["verb"], copied["data"]))
    assert status == 200 and secret not in json.dumps(after) and "handed over" in json.dumps(after)
    await talk.expect("handed over", after=shown_at, method="PUT")  # now the message changes for everyone
    status, third = await client.post(execute(chat, RILEY, connector.url, guided.new_id, reveal["verb"], reveal["data"]))
    assert "not stored any more" in json.dumps(third) and secret not in json.dumps(third)
    mark = await talk.click(RILEY, guided, "Show client secret")  # a client without Universal Actions falls back to Submit
    await talk.expect("never post secrets", after=mark)
    assert secret not in "\n".join(json.dumps(c.body) for c in connector.calls)
    job = (await running_bot.service.list_jobs())[0]
    actions = [a["action"] for a in await running_bot.service.audit_log(job.id)]
    assert actions.count("secret_shown") == 2 and actions.count("secret_copied") == 1
    assert [a for a in actions if a == "refused"], "the other people's attempts are audited"


async def test_failure_shows_the_actionable_message_and_retry_finishes(running_bot, connector: Connector, sandbox: Sandbox) -> None:  # type: ignore[no-untyped-def]
    await sandbox.set_faults(FaultSettings(replication_delay_s=0, dataverse_burst_rate=1.0))
    chat = personal(RILEY)
    talk, mark, progress = await approved_setup(running_bot, connector, chat, require_secured=False)
    guided = await talk.expect("Your turn: Copilot Studio: authenticate manually", after=mark)
    await talk.click(RILEY, guided, "Do it in the sandbox (emulated Copilot Studio)")
    failed = await talk.expect("Stopped: a step failed", after=mark, method="PUT")
    assert failed.activity_id == progress.new_id and "wait a few minutes, then retry" in failed.text.lower()
    await sandbox.set_faults(FaultSettings(replication_delay_s=0))
    mark = await talk.click(MALLORY, failed, "Retry")
    await talk.expect("You can't do that", after=mark)
    mark = await talk.click(RILEY, failed, "Retry")
    done = await talk.expect("is set up", after=mark, timeout=30)
    assert "Publish the agent" in done.text


async def test_reminder_arrives_once_after_a_restart(bot_factory, connector: Connector) -> None:  # type: ignore[no-untyped-def]
    first = await bot_factory(PROPAGATION_DELAY="2s")
    chat = personal(RILEY)
    talk, mark, progress = await approved_setup(first, connector, chat)
    guided = await talk.expect("Your turn: Copilot Studio: authenticate manually", after=mark)
    await talk.click(RILEY, guided, "Do it in the sandbox (emulated Copilot Studio)")
    secured = await talk.expect("Your turn: Web channel: require secured access", after=mark)
    mark = await talk.click(RILEY, secured, "Do it in the sandbox (emulated Copilot Studio)")
    await talk.expect("Reminder set: secured access", after=mark)
    await first.runner.cleanup()  # the bot goes down before the propagation window has passed
    second = await bot_factory(PROPAGATION_DELAY="2s")
    talk.bot = second
    await talk.expect("Secured access is now in effect", after=mark, timeout=20)
    await talk.expect("is set up", after=mark, timeout=20)
    after_restart = await talk.expect("Setting up 'Contoso Support': Done", after=mark, method="PUT")
    assert after_restart.activity_id == progress.new_id
    reminders = [c for c in connector.calls if "Secured access is now in effect" in c.text]
    assert len(reminders) == 1


async def test_no_secret_in_messages_logs_or_databases(running_bot, connector: Connector, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    chat = personal(RILEY)
    talk, mark, _ = await approved_setup(running_bot, connector, chat, require_secured=False, connect=True)
    guided = await talk.expect("Your turn: Copilot Studio: authenticate manually", after=mark)
    reveal = action(guided, "Show client secret")
    _, body = await running_bot.client.post(execute(chat, RILEY, connector.url, guided.new_id, reveal["verb"], reveal["data"]))
    secret = next(e["value"] for e in body["value"]["body"] if e.get("id") == "secret")
    copied = next(a for a in body["value"]["actions"] if a["title"] == "I copied it")
    await running_bot.client.post(execute(chat, RILEY, connector.url, guided.new_id, copied["verb"], copied["data"]))
    job = (await running_bot.service.list_jobs())[0]
    from tests.fixtures.sandbox import sandbox_http

    class _Env:
        env = running_bot.env

    async with sandbox_http(_Env) as http:  # type: ignore[arg-type]
        await http.post(f"{running_bot.env['SANDBOX_URL']}/_sandbox/bots/{job.agent.bot_id}/manual-authentication",
                        json={"client_id": job.step(StepName.APP_REGISTRATION).outputs["client_id"], "client_secret": secret})
    await talk.click(RILEY, guided, "Done, check it")
    connect = await talk.expect("Your turn: Connect to Dynamics 365 Customer Service", after=mark)
    await talk.click(RILEY, connect, "Do it in the sandbox (emulated Copilot Studio)")
    await talk.expect("is set up", after=mark, timeout=30)
    assert secret not in "\n".join(json.dumps(c.body) for c in connector.calls)
    assert not [r.getMessage() for r in caplog.records if secret in r.getMessage()]
    for path in Path(running_bot.env["STATE_DB"]).parent.glob("*"):
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path


async def test_a_lost_secret_is_replaced_by_a_new_one_and_the_old_one_removed(running_bot, connector: Connector) -> None:  # type: ignore[no-untyped-def]
    from tests.fixtures.sandbox import sandbox_http

    chat = personal(RILEY)
    talk, mark, _ = await approved_setup(running_bot, connector, chat, require_secured=False)
    guided = await talk.expect("Your turn: Copilot Studio: authenticate manually", after=mark)
    reveal = action(guided, "Show client secret")
    status, body = await running_bot.client.post(execute(chat, RILEY, connector.url, guided.new_id, reveal["verb"], reveal["data"]))
    first = next(e["value"] for e in body["value"]["body"] if e.get("id") == "secret")
    copied = next(a for a in body["value"]["actions"] if a["title"] == "I copied it")
    await running_bot.client.post(execute(chat, RILEY, connector.url, guided.new_id, copied["verb"], copied["data"]))
    shown = await talk.expect("it is not stored any more", after=mark, method="PUT")  # the card now offers a new secret instead
    assert "Show client secret" not in [a["title"] for c in shown.cards for a in c.get("actions", [])]
    mark = await talk.click(RILEY, shown, "Make a new client secret")
    again = await connector.wait_for(lambda c: c.conversation_id == chat.id and c.method == "PUT" and any(a.get("title") == "Show client secret" for k in c.cards for a in k.get("actions", [])), after=mark)
    reveal = action(again, "Show client secret")
    status, body = await running_bot.client.post(execute(chat, RILEY, connector.url, again.activity_id, reveal["verb"], reveal["data"]))
    assert status == 200, body
    second = next(e["value"] for e in body["value"]["body"] if e.get("id") == "secret")
    assert second != first
    job = (await running_bot.service.list_jobs())[0]
    async with sandbox_http(_SB(running_bot)) as http:
        tenant = (await http.get(f"{running_bot.env['SANDBOX_URL']}/_sandbox/state")).json()
    app = next(a for a in tenant["applications"] if a["appId"] == job.step(StepName.APP_REGISTRATION).outputs["client_id"])
    assert len(app["passwordCredentials"]) == 1, "the lost secret was removed, the new one is the only one"
    assert [a["action"] for a in await running_bot.service.audit_log(job.id)].count("secret_renewed") == 1


class _SB:
    def __init__(self, bot) -> None:  # type: ignore[no-untyped-def]
        self.env = bot.env
