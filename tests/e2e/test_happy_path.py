"""From `/setup copilot` to the completion card, as Teams would send it, over real HTTP: the federated credential
(the default: no secret at all) and the client secret (the original procedure)."""

from __future__ import annotations

import json
from typing import Any

from provisioning import JobStatus, StepName
from tests.fixtures.connector import Connector
from tests.fixtures.sandbox import sandbox_http
from tests.fixtures.teams import RILEY, execute, personal

from .helpers import Conversation, action


class _Env:
    """sandbox_http needs only the CA file from the environment the bot runs with."""

    def __init__(self, bot: Any) -> None:
        self.env = bot.env


async def _tenant(bot: Any) -> dict[str, Any]:
    async with sandbox_http(_Env(bot)) as http:  # type: ignore[arg-type]
        return dict((await http.get(f"{bot.env['SANDBOX_URL']}/_sandbox/state")).json())


async def _to_plan(talk: Conversation, **details: str) -> Any:
    mark = await talk.say(RILEY, "/setup copilot")
    choose = await talk.expect("Set up an agent: 1 of 2", after=mark)
    choice = next(e for e in choose.cards[0]["body"] if e.get("id") == "agent")
    support = next(c["value"] for c in choice["choices"] if c["title"].startswith("Contoso Support"))
    mark = await talk.click(RILEY, choose, "Next", agent=support)
    form = await talk.expect("Set up an agent: 2 of 2", after=mark)
    credential = next(e for e in form.cards[0]["body"] if e.get("id") == "credential")
    assert credential["value"] == "federated", "the federated credential is the default"
    mark = await talk.click(RILEY, form, "Review plan", **details)
    return await talk.expect("Plan for 'Contoso Support'", after=mark)


async def _finish(talk: Conversation, after: int) -> Any:
    secured = await talk.expect("Your turn: Web channel: require secured access", after=after)
    mark = await talk.click(RILEY, secured, "Do it in the sandbox (emulated Copilot Studio)")
    await talk.expect("Reminder set: secured access", after=mark)
    connect = await talk.expect("Your turn: Connect to Dynamics 365 Customer Service", after=mark)
    mark2 = await talk.click(RILEY, connect, "Do it in the sandbox (emulated Copilot Studio)")
    await talk.expect("Secured access is now in effect", after=mark)
    done = await talk.expect("is set up", after=mark2, timeout=30)
    assert done.body["entities"][0]["mentioned"]["id"] == RILEY.account["id"]
    return done


async def test_the_federated_path_all_the_way_with_no_secret_ever_made(running_bot, connector: Connector) -> None:  # type: ignore[no-untyped-def]
    talk = Conversation(running_bot, connector, personal(RILEY))
    plan = await _to_plan(talk)
    assert "Federated credential" in plan.text and "Client secret: skipped" in plan.text
    mark = await talk.click(RILEY, plan, "Approve")
    progress = await talk.expect("Setting up 'Contoso Support'", after=mark, method="POST")
    guided = await talk.expect("Your turn: Federated credential", after=mark)
    assert {e.get("id") for e in guided.cards[0]["body"]} >= {"issuer", "subject"}
    assert "Microsoft Entra ID V2 with federated credentials" in guided.text

    mark = await talk.click(RILEY, guided, "Add the federated credential", issuer="http://not secure", subject="has spaces in it")
    fixed = await talk.expect("Your turn: Federated credential", after=mark, method="PUT")  # the same card, errors under the fields
    body = fixed.cards[0]["body"]
    at = {e.get("id"): i for i, e in enumerate(body)}
    assert "https URL" in body[at["issuer"] + 1]["text"] and "no spaces" in body[at["subject"] + 1]["text"]
    assert body[at["issuer"]]["value"] == "http://not secure", "what the person typed is kept"

    job = (await running_bot.service.list_jobs())[0]
    client_id = job.step(StepName.APP_REGISTRATION).outputs["client_id"]
    async with sandbox_http(_Env(running_bot)) as http:  # type: ignore[arg-type]  # the person reads the two values in Copilot Studio
        shown = (await http.post(f"{running_bot.env['SANDBOX_URL']}/_sandbox/bots/{job.agent.bot_id}/federated-authentication",
                                 json={"client_id": client_id, "tenant_id": running_bot.env["PROVISIONING_TENANT_ID"]})).json()
    mark = await talk.click(RILEY, fixed, "Add the federated credential", issuer=shown["issuer"], subject=shown["subject"])
    save = await talk.expect("Your turn: Copilot Studio: authenticate manually", after=mark)
    assert "Select Save" in save.text, save.text
    async with sandbox_http(_Env(running_bot)) as http:  # type: ignore[arg-type]
        saved = await http.post(f"{running_bot.env['SANDBOX_URL']}/_sandbox/bots/{job.agent.bot_id}/federated-authentication/save")
        assert saved.status_code == 200, saved.text  # Copilot Studio saves only because the credential is really there
    mark = await talk.click(RILEY, save, "Done, check it")
    await talk.expect("✓ done", after=mark, method="PUT")
    await _finish(talk, mark)
    final = await talk.expect("Setting up 'Contoso Support': Done", after=mark, method="PUT")
    assert final.activity_id == progress.new_id  # the one progress card, updated in place
    assert (await running_bot.service.get_job(job.id)).status == JobStatus.COMPLETED
    app = next(a for a in (await _tenant(running_bot))["applications"] if a["appId"] == client_id)
    assert app["passwordCredentials"] == [], "no secret was ever made"
    assert [(c["issuer"], c["subject"], c["audiences"]) for c in app["federatedIdentityCredentials"]] == [
        (shown["issuer"], shown["subject"], ["api://AzureADTokenExchange"])]


async def test_the_client_secret_path_all_the_way_to_the_completion_card(running_bot, connector: Connector) -> None:  # type: ignore[no-untyped-def]
    chat = personal(RILEY)
    talk = Conversation(running_bot, connector, chat)
    plan = await _to_plan(talk, credential="client_secret")
    assert "You do this by hand" in plan.text
    mark = await talk.click(RILEY, plan, "Approve")
    approved = await talk.expect("Approved: the setup is running.", after=mark, method="PUT")
    assert approved.activity_id == plan.new_id  # the plan card was updated in place
    guided = await talk.expect("Your turn: Copilot Studio: authenticate manually", after=mark)
    reveal = action(guided, "Show client secret")
    assert reveal["type"] == "Action.Execute"
    status, body = await running_bot.client.post(execute(chat, RILEY, connector.url, guided.new_id, reveal["verb"], reveal["data"]))
    assert status == 200 and body["type"] == "application/vnd.microsoft.card.adaptive"
    secret = next(e["value"] for e in body["value"]["body"] if e.get("id") == "secret")
    assert len(secret) >= 16
    sandbox_button = next(a for a in body["value"]["actions"] if a["title"].startswith("Do it in the sandbox"))
    status, after = await running_bot.client.post(execute(chat, RILEY, connector.url, guided.new_id, sandbox_button["verb"], sandbox_button["data"]))
    assert status == 200 and "✓ done" in json.dumps(after, ensure_ascii=False), "show, then 'Do it in the sandbox': no dead end"
    await _finish(talk, mark)
    job = (await running_bot.service.list_jobs())[0]
    assert (await running_bot.service.get_job(job.id)).status == JobStatus.COMPLETED
    app = next(a for a in (await _tenant(running_bot))["applications"] if a["appId"] == job.step(StepName.APP_REGISTRATION).outputs["client_id"])
    assert len(app["passwordCredentials"]) == 1 and not app.get("federatedIdentityCredentials")
    everything = "\n".join(json.dumps(c.body) for c in connector.calls)
    assert secret not in everything, "the secret must never be posted to the conversation"
