"""From `/setup copilot` to the completion card, as Teams would send it, over real HTTP."""

from __future__ import annotations

import json

from provisioning import JobStatus, StepName
from tests.fixtures.connector import Connector
from tests.fixtures.teams import RILEY, execute, personal

from .helpers import Conversation, action


async def test_personal_chat_all_the_way_to_the_completion_card(running_bot, connector: Connector) -> None:  # type: ignore[no-untyped-def]
    chat = personal(RILEY)
    talk = Conversation(running_bot, connector, chat)
    mark = await talk.say(RILEY, "/setup copilot")
    choose = await talk.expect("Set up an agent: 1 of 2", after=mark)
    choice = next(e for e in choose.cards[0]["body"] if e.get("id") == "agent")
    support = next(c["value"] for c in choice["choices"] if c["title"].startswith("Contoso Support"))
    mark = await talk.click(RILEY, choose, "Next", agent=support)
    details = await talk.expect("Set up an agent: 2 of 2", after=mark)
    mark = await talk.click(RILEY, details, "Review plan")
    plan = await talk.expect("Plan for 'Contoso Support'", after=mark)
    assert "Create" in plan.text and "You do this by hand" in plan.text
    mark = await talk.click(RILEY, plan, "Approve")
    approved = await talk.expect("Approved: the setup is running.", after=mark, method="PUT")
    assert approved.activity_id == plan.new_id  # the plan card was updated in place
    progress = await talk.expect("Setting up 'Contoso Support'", after=mark, method="POST")

    guided = await talk.expect("Your turn: Copilot Studio: authenticate manually", after=mark)
    reveal = action(guided, "Show client secret (once)")
    assert reveal["type"] == "Action.Execute"
    status, body = await running_bot.client.post(execute(chat, RILEY, connector.url, guided.new_id, reveal["verb"], reveal["data"]))
    assert status == 200 and body["type"] == "application/vnd.microsoft.card.adaptive"
    secret = next(e["value"] for e in body["value"]["body"] if e.get("id") == "secret")
    assert len(secret) >= 16
    # performing the step in the emulated Copilot Studio needs the secret, which was just shown: do it as a person would
    from tests.fixtures.sandbox import sandbox_http

    job = (await running_bot.service.list_jobs())[0]
    async with sandbox_http(_sandbox(running_bot)) as http:
        r = await http.post(f"{running_bot.env['SANDBOX_URL']}/_sandbox/bots/{job.agent.bot_id}/manual-authentication",
                            json={"client_id": job.step(StepName.APP_REGISTRATION).outputs["client_id"], "client_secret": secret})
        assert r.status_code == 200, r.text
    mark = await talk.click(RILEY, guided, "Done, check it")
    await talk.expect("✓ done", after=mark, method="PUT")

    secured = await talk.expect("Your turn: Web channel: require secured access", after=mark)
    mark = await talk.click(RILEY, secured, "Do it in the sandbox (emulated Copilot Studio)")
    reminder = await talk.expect("Reminder set: secured access", after=mark)
    assert "takes up to 1 seconds" in reminder.text or "takes up to" in reminder.text
    connect = await talk.expect("Your turn: Connect to Dynamics 365 Customer Service", after=mark)
    mark2 = await talk.click(RILEY, connect, "Do it in the sandbox (emulated Copilot Studio)")
    await talk.expect("Secured access is now in effect", after=mark)
    done = await talk.expect("is set up", after=mark2, timeout=30)
    assert done.body["entities"][0]["mentioned"]["id"] == RILEY.account["id"]
    final = await talk.expect("Setting up 'Contoso Support': Done", after=mark2, method="PUT")
    assert final.activity_id == progress.new_id  # the one progress card, updated in place
    assert not [c for c in connector.calls[mark2:] if c.method == "POST" and "Setting up" in c.text]
    assert (await running_bot.service.get_job(job.id)).status == JobStatus.COMPLETED
    everything = "\n".join(json.dumps(c.body) for c in connector.calls)
    assert secret not in everything, "the secret must never be posted to the conversation"


def _sandbox(bot):  # type: ignore[no-untyped-def]
    """sandbox_http only needs the CA file from the environment the bot runs with."""
    class _SB:
        env = bot.env
    return _SB
