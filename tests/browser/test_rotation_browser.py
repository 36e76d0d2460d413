"""Day two as a person sees it: a client secret about to expire, rotated from the card the watch posts. The real bot
(watch every second) against the sandbox, in the Microsoft 365 Agents Playground in Debian's Chromium: a setup with a
client secret to its completion card, the sandbox's clock moved 151 days on, the expiry card on screen, then Rotate,
Approve, the guided Copilot Studio step done in the sandbox, and the completion card. Each card is measured (no text
or button cut off, no word broken in two) and saved as test-output/browser/rotation-*.png."""

from __future__ import annotations

import re
from typing import Any

from sandbox import Sandbox
from tests.browser.harness import BROWSER, OUT, card, measure, playground_page, say
from tests.fixtures.sandbox import sandbox_http

pytestmark = BROWSER

DAY = 86_400
AGENT = "Contoso Support"
SANDBOX_BUTTON = "Do it in the sandbox (emulated Copilot Studio)"
AUTHENTICATE = "Your turn: Copilot Studio: authenticate manually"

async def shown(page: Any, words: str, name: str) -> list[str]:
    """The card titled `words`, screenshot as test-output/browser/`name`.png; fails if any of its text or buttons is cut
    off or a word is broken across lines. Returns its text elements' texts (zero-width break opportunities removed)."""
    element = card(page, words)
    await element.scroll_into_view_if_needed()
    await page.wait_for_timeout(200)  # the Playground lays a new or updated card out
    await element.screenshot(path=str(OUT / f"{name}.png"))
    return await measure(element, f"on the card '{words}'", buttons=True)


async def buttons(page: Any, words: str, *labels: str) -> None:
    """Each of `labels` is a visible, enabled button of the card, inside it (not behind an overflow menu)."""
    from playwright.async_api import expect

    element = card(page, words)
    box = await element.bounding_box()
    for label in labels:
        button = element.get_by_role("button", name=label)
        await expect(button).to_be_visible()
        await expect(button).to_be_enabled()
        inner = await button.bounding_box()
        assert box and inner and inner["x"] >= box["x"] - 0.5 and inner["x"] + inner["width"] <= box["x"] + box["width"] + 0.5, \
            f"the button '{label}' reaches past the card '{words}': {inner} in {box}"


async def tenant_passwords(sb: Sandbox) -> list[dict[str, Any]]:
    """The password credentials of the app registration the bot made, as `GET /_sandbox/state` shows them."""
    async with sandbox_http(sb) as http:
        r = await http.get(f"{sb.url}/_sandbox/state")
        assert r.status_code == 200, r.text
        apps = [a for a in r.json()["applications"]
                if (a.get("uniqueName") or "").startswith("cps-auth-") and not a.get("deletedDateTime")]
    assert len(apps) == 1, [a.get("uniqueName") for a in apps]
    return list(apps[0].get("passwordCredentials") or [])


async def move_clock(sb: Sandbox, offset_s: float) -> None:
    async with sandbox_http(sb) as http:
        r = await http.put(f"{sb.url}/_sandbox/clock", json={"offset_s": offset_s})
        assert r.status_code == 200, r.text


async def set_up_with_a_client_secret(page: Any) -> None:
    """`/setup copilot` for Contoso Support with the client secret, every guided step done in the sandbox."""
    from playwright.async_api import expect

    await expect(page.get_by_text("Copilot Setup Bot").last).to_be_visible(timeout=20_000)  # the welcome card: the chat is ready
    await say(page, "/setup copilot")
    await expect(page.get_by_text("Set up an agent: 1 of 2").last).to_be_visible(timeout=20_000)
    await page.get_by_role("combobox").last.click()
    await page.get_by_role("option", name=re.compile(f"^{AGENT}")).click()
    await page.get_by_role("button", name="Next").last.click()
    await expect(page.get_by_text("Set up an agent: 2 of 2").last).to_be_visible(timeout=20_000)
    await page.get_by_role("radio", name=re.compile(r"^Client secret")).last.check()  # input `credential`, value client_secret
    await page.get_by_role("button", name="Review plan").last.click()
    await expect(page.get_by_text(f"Plan for '{AGENT}'").last).to_be_visible(timeout=20_000)
    await expect(page.get_by_text("Create: Client secret", exact=False).last).to_be_visible()
    await page.get_by_role("button", name="Approve").last.click()
    await expect(page.get_by_text("Approved: the setup is running.").last).to_be_visible(timeout=20_000)
    for step in ("Copilot Studio: authenticate manually", "Web channel", "Connect to Dynamics 365"):
        await expect(page.get_by_text(f"Your turn: {step}", exact=False).last).to_be_visible(timeout=30_000)
        await card(page, f"Your turn: {step}").get_by_role("button", name=SANDBOX_BUTTON).click()
    await expect(page.get_by_text(f"'{AGENT}' is set up").last).to_be_visible(timeout=40_000)


async def test_a_person_rotates_an_expiring_client_secret_from_the_expiry_card(sandbox: Sandbox, bot_factory: Any) -> None:
    from playwright.async_api import expect

    bot = await bot_factory(WATCH_INTERVAL="1s")
    async with playground_page(bot, "rotation", height=1400) as page:
        await set_up_with_a_client_secret(page)
        done = await shown(page, f"'{AGENT}' is set up", "rotation-1-setup-completed")
        assert [t for t in done if re.match(r"✓ Made a client secret, expires \d{1,2} [A-Z][a-z]+ \d{4}, \d\d:\d\d UTC$", t)], done
        before = await tenant_passwords(sandbox)
        assert len(before) == 1, before
        try:
            await move_clock(sandbox, 151 * DAY)  # 29 days left of the default 180
            expiry = f"Client secret of '{AGENT}' expires soon"
            await expect(page.get_by_text(expiry).last).to_be_visible(timeout=30_000)
            await expect(card(page, expiry)).to_be_in_viewport(timeout=5_000)  # the chat scrolled to it: a person sees it arrive
            await page.screenshot(path=str(OUT / "rotation-2-expiry-chat.png"))
            texts = await shown(page, expiry, "rotation-2-expiry-card")
            assert f"The client secret of '{AGENT}' expires in 29 days." in texts, texts
            assert [t for t in texts if re.match(r"It expires \d{1,2} [A-Z][a-z]+ \d{4}, \d\d:\d\d UTC \(by Microsoft Entra's clock\)\. "
                                                 r"Client ID [0-9a-f-]{36}\.$", t)], texts
            await buttons(page, expiry, "Rotate the secret", "Switch to a federated credential")
            await page.wait_for_timeout(3_000)  # three more watch passes: the notice is not posted again
            assert await page.locator(".ac-adaptiveCard", has_text=expiry).count() == 1

            await move_clock(sandbox, 0)  # the new secret's lifetime counts from now, by the bot's clock as by Entra's
            await card(page, expiry).get_by_role("button", name="Rotate the secret").click()
            plan = f"Plan: rotate the client secret of '{AGENT}'"
            await expect(page.get_by_text(plan).last).to_be_visible(timeout=20_000)
            texts = await shown(page, plan, "rotation-3-plan")
            assert [t for t in texts if "Remove the old credential" in t], texts
            await buttons(page, plan, "Approve")
            await card(page, plan).get_by_role("button", name="Approve").click()

            progress = f"Changing the credential of '{AGENT}'"
            await expect(page.get_by_text(progress).last).to_be_visible(timeout=20_000)
            await expect(card(page, plan).get_by_text("Approved by", exact=False)).to_be_visible(timeout=20_000)
            await shown(page, plan, "rotation-4-plan-approved")
            await expect(page.locator(".ac-adaptiveCard", has_text=AUTHENTICATE)).to_have_count(2, timeout=30_000)  # the setup's, and this one
            await shown(page, progress, "rotation-5-progress")
            texts = await shown(page, AUTHENTICATE, "rotation-6-guided-step")
            await buttons(page, AUTHENTICATE, "Show client secret", SANDBOX_BUTTON)
            await card(page, AUTHENTICATE).get_by_role("button", name=SANDBOX_BUTTON).click()

            finished = f"'{AGENT}' signs in with its new credential"
            await expect(page.get_by_text(finished).last).to_be_visible(timeout=40_000)
            await expect(card(page, finished)).to_be_in_viewport(timeout=5_000)
            texts = await shown(page, finished, "rotation-7-completed")
            assert [t for t in texts if "Removed the old credential, after Copilot Studio used the new one" in t], texts
            await shown(page, progress, "rotation-8-progress-finished")
        finally:
            await move_clock(sandbox, 0)

    after = await tenant_passwords(sandbox)
    assert len(after) == 1 and after[0]["keyId"] != before[0]["keyId"], "exactly one password credential, the new one"
