"""Day two seen from Teams, over real HTTP (bot, sandbox, fake Bot Connector): expiry cards once across a restart,
rotation from the expiry card, drift reported once and put back, `remove copilot`, and status with each setup's health."""

from __future__ import annotations

import asyncio
from typing import Any

from sandbox import Sandbox
from tests.fixtures.connector import Connector
from tests.fixtures.sandbox import sandbox_http
from tests.fixtures.teams import AVERY, MALLORY, RILEY, personal

from .helpers import Conversation
from .test_jobs import approved_setup

DAY = 86_400.0
WATCH = {"WATCH_INTERVAL": "1s", "SETUP_APPROVERS": f"{RILEY.aad},{AVERY.aad}", "REQUIRE_SECOND_APPROVER": "false"}


async def tenant(sb: Sandbox) -> dict[str, Any]:
    async with sandbox_http(sb) as http:
        return dict((await http.get(f"{sb.url}/_sandbox/state")).json())


def our_app(state: dict[str, Any]) -> dict[str, Any]:
    apps = [a for a in state["applications"] if (a.get("uniqueName") or "").startswith("cps-auth-") and not a.get("deletedDateTime")]
    assert len(apps) == 1, [a.get("uniqueName") for a in apps]
    return apps[0]


async def completed_setup(bot: Any, connector: Connector) -> Conversation:
    talk, mark, _ = await approved_setup(bot, connector, personal(RILEY), require_secured=False)
    guided = await talk.expect("Your turn: Copilot Studio: authenticate manually", after=mark)
    await talk.click(RILEY, guided, "Do it in the sandbox (emulated Copilot Studio)")
    await talk.expect("'Contoso Support' is set up", after=mark, timeout=30)
    return talk


def posted(connector: Connector, words: str) -> list[Any]:
    return [c for c in connector.calls if c.method == "POST" and words in c.text]


async def settle(seconds: float = 3.5) -> None:
    """Several watch passes (WATCH_INTERVAL=1s): time for a notice to be sent twice, were it going to be."""
    await asyncio.sleep(seconds)


async def test_expiry_cards_arrive_once_each_across_a_restart_and_rotation_leaves_one_new_secret(
        sandbox: Sandbox, bot_factory: Any, connector: Connector) -> None:
    bot = await bot_factory(**WATCH)
    talk = await completed_setup(bot, connector)
    old = our_app(await tenant(sandbox))["passwordCredentials"]
    try:
        await sandbox.set_clock_offset(151 * DAY)  # 29 days left of the default 180
        first = await talk.expect("expires soon", timeout=20)
        assert "expires in 29 days" in first.text and "Rotate the secret" in [a["title"] for c in first.cards for a in c.get("actions", [])]
        await bot.runner.cleanup()
        bot = await bot_factory(**WATCH)  # the same database: a restart
        talk.bot = bot
        await settle()
        assert len(posted(connector, "expires soon")) == 1, "the 30-day card once, also after the restart"
        await sandbox.set_clock_offset(174 * DAY)
        await talk.expect("expires in 6 days", timeout=20)
        await sandbox.set_clock_offset(179.3 * DAY)
        last = await talk.expect("expires in 1 day", timeout=20)
        await settle()
        assert len(posted(connector, "expires soon")) == 3, [c.text[:80] for c in posted(connector, "expires soon")]
        await sandbox.set_clock_offset(0)  # the new secret's lifetime counts from now, by the bot's clock as by Entra's
        mark = await talk.click(MALLORY, last, "Rotate the secret")
        await talk.expect("You can't do that", after=mark)
        mark = await talk.click(RILEY, last, "Rotate the secret")
        plan = await talk.expect("Plan: rotate the client secret of 'Contoso Support'", after=mark)
        assert "Remove the old credential" in plan.text
        mark = await talk.click(RILEY, plan, "Approve")
        await talk.expect("Approved by", after=mark, method="PUT")
        guided = await talk.expect("Your turn: Copilot Studio: authenticate manually", after=mark, timeout=30)
        await talk.click(RILEY, guided, "Do it in the sandbox (emulated Copilot Studio)")
        done = await talk.expect("signs in with its new credential", after=mark, timeout=30)
        assert "Removed the old credential" in done.text
        now = our_app(await tenant(sandbox))["passwordCredentials"]
        assert len(now) == 1 and now[0]["keyId"] != old[0]["keyId"], "exactly one valid secret, the new one"
        mark = await talk.say(RILEY, "status")
        status = await talk.expect("Setups in every conversation", after=mark)  # Riley is an approver: every setup
        assert "Contoso Support: as approved" in status.text and "Credential: client secret, expires" in status.text
        await settle()
        assert len(posted(connector, "expires soon")) == 3, "the new secret has its own 180 days: no notice"
    finally:
        await sandbox.set_clock_offset(0)


async def test_drift_is_reported_once_and_put_back_after_approval(sandbox: Sandbox, bot_factory: Any, connector: Connector) -> None:
    bot = await bot_factory(**WATCH)
    talk = await completed_setup(bot, connector)
    app = our_app(await tenant(sandbox))
    async with sandbox_http(sandbox) as http:
        r = await http.patch(f"{sandbox.url}/_sandbox/applications/{app['appId']}", json={"web": {"redirectUris": ["https://evil.example/cb"]}})
        assert r.status_code == 200, r.text
    drift = await talk.expect("The setup of 'Contoso Support' changed", timeout=20)
    assert "web.redirectUris: approved https:" in drift.text.replace("\u200b", "") and "now https://evil.example/cb" in drift.text.replace("\u200b", "")
    await settle()
    assert len(posted(connector, "changed")) == 1, "reported once"
    mark = await talk.click(MALLORY, drift, "Keep the change")
    await talk.expect("You can't do that", after=mark)  # only an approver records the tenant as approved
    mark = await talk.click(RILEY, drift, "Put it back")
    plan = await talk.expect("Plan: put the setup of 'Contoso Support' back as approved", after=mark)
    mark = await talk.click(MALLORY, plan, "Approve")
    await talk.expect("You can't approve this plan", after=mark)
    mark = await talk.click(AVERY, plan, "Approve")
    await talk.expect("is set up as approved again", after=mark, timeout=30)
    assert "https://evil.example/cb" not in our_app(await tenant(sandbox))["web"]["redirectUris"]
    await settle()
    assert len(posted(connector, "changed")) == 1


async def test_remove_copilot_deletes_the_bots_app_registration(sandbox: Sandbox, bot_factory: Any, connector: Connector) -> None:
    bot = await bot_factory()
    talk = await completed_setup(bot, connector)
    mark = await talk.say(RILEY, "remove copilot")
    plan = await talk.expect("Plan: remove the setup of 'Contoso Support'", after=mark)
    assert "Delete: Delete the app registration" in plan.text
    mark = await talk.click(RILEY, plan, "Approve")
    guided = await talk.expect("Your turn: Copilot Studio: stop using this app registration", after=mark, timeout=30)
    await talk.click(RILEY, guided, "Do it in the sandbox (emulated Copilot Studio)")
    await talk.expect("The setup of 'Contoso Support' is removed", after=mark, timeout=30)
    assert not [a for a in (await tenant(sandbox))["applications"]
                if (a.get("uniqueName") or "").startswith("cps-auth-") and not a.get("deletedDateTime")]
    mark = await talk.say(RILEY, "status")
    status = await talk.expect("Setups in this conversation", after=mark)
    assert "Contoso Support: removed" in status.text
    mark = await talk.say(RILEY, "remove copilot")
    await talk.expect("Nothing to remove here", after=mark)
