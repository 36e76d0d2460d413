"""The plan and completion cards as a person sees them: the real bot, against the sandbox, in the Microsoft 365 Agents
Playground in Debian's Chromium, with long values typed into the setup form. At a 1280 px and a 420 px wide window,
no text element of the card is cut off (scrollWidth <= clientWidth, and inside the card) or broken between two
letters, and every redirect URI is whole in one element. Screenshots of each card go to test-output/browser/."""

from __future__ import annotations

import re
from typing import Any

from tests.browser.harness import BROWSER, OUT, card, measure, say

pytestmark = BROWSER

AGENT = "Contoso Returns and Warranty Claims Assistant"  # a sandbox agent whose name is over 30 characters
DISPLAY_NAME = "Contoso Returns and Warranty Claims Assistant sign-in for Dynamics 365 Customer Service, Western Europe"
REDIRECT_URIS = (
    "https://token.botframework.com/.auth/web/redirect",
    "https://europe.token.botframework.com/.auth/web/redirect",
    "https://contoso-customer-service-portal.westeurope.cloudapp.azure.com/signin-oidc/copilot-studio/returns-and-warranty-claims",
)
WIDTHS = (1280, 420)
HEIGHT = 4000  # tall enough that a whole card is on screen for its screenshot

# The Playground is made for a desktop window: it draws every card in a frame 450 px wide (its cardMessageContainer
# style) inside a chat column at least 600 px wide, so in a narrow window a card only runs off the screen. Teams on a
# phone gives a card the window's width. So at a narrow width this lets the frame and the column around the cards (and
# nothing else) take the width the window has; the Playground's own renderer then lays the card out that narrow.
FIT_WINDOW = r"""
(card) => {
  const width = document.documentElement.clientWidth;
  for (const each of document.querySelectorAll('.ac-adaptiveCard')) {
    for (let e = each.parentElement; e && e !== document.body; e = e.parentElement) {
      const style = getComputedStyle(e);
      if (style.width === '450px') e.style.width = '100%';
      if (parseFloat(style.minWidth) > width / 2) e.style.minWidth = '0';
    }
  }
  const box = card.getBoundingClientRect();
  return {fits: box.left >= 0 && box.right <= width, left: box.left, right: box.right, window: width};
}
"""


async def check(page: Any, words: str, name: str, *, details: str | None = None, widths: tuple[int, ...] = WIDTHS) -> list[str]:
    """Measure the card at each width (screenshot each); return every text element's text, as shown at the last width.
    `details`: a line under the card's Details toggle, to open it first (the Playground draws the card anew on a resize)."""
    texts: list[str] = []
    for width in widths:
        await page.set_viewport_size({"width": width, "height": HEIGHT})
        await page.wait_for_timeout(300)  # the Playground lays the chat out again after a resize
        element = card(page, words)
        if width < 450:
            for _ in range(10):  # the Playground may lay the chat out again after a card update: fit it again until settled
                fitted = await element.evaluate(FIT_WINDOW)
                if fitted["fits"]:
                    break
                await page.wait_for_timeout(300)
            assert fitted["fits"], f"the card does not fit a {width} px window: {fitted}"
        if details is not None and not await element.get_by_text(details).is_visible():
            await element.get_by_role("button", name="Details").click()
            await element.get_by_text(details).wait_for()
        await element.scroll_into_view_if_needed()
        await element.screenshot(path=str(OUT / f"{name}-{width}.png"))
        texts = await measure(element, f"on the card '{words}' at {width} px")
    return texts


async def test_plan_and_completion_cards_fit_a_wide_and_a_narrow_window(page: Any) -> None:
    from playwright.async_api import expect

    await expect(page.get_by_text("Copilot Setup Bot").last).to_be_visible(timeout=20_000)  # the welcome card: the chat is ready
    await say(page, "/setup copilot")
    await expect(page.get_by_text("Set up an agent: 1 of 2").last).to_be_visible(timeout=20_000)
    await page.get_by_role("combobox").last.click()
    await page.get_by_role("option", name=re.compile(f"^{AGENT}")).click()
    await page.get_by_role("button", name="Next").last.click()
    await expect(page.get_by_text("Set up an agent: 2 of 2").last).to_be_visible(timeout=20_000)
    await page.get_by_label("App registration name").last.fill(DISPLAY_NAME)
    await page.get_by_label("Redirect URIs (one per line)").last.fill("\n".join(REDIRECT_URIS))
    await page.get_by_role("checkbox", name="Connect the agent to Dynamics 365 Customer Service").last.uncheck()  # the name is over 30
    # the client secret, so that the completion card carries the longest line (the secret's expiry); the federated
    # default's completion card is measured in test_credential_paths.py
    await page.get_by_role("radio", name=re.compile(r"^Client secret")).last.check()
    await page.get_by_role("button", name="Review plan").last.click()
    await expect(page.get_by_text(f"Plan for '{AGENT}'").last).to_be_visible(timeout=20_000)

    shown = await check(page, f"Plan for '{AGENT}'", "plan")
    for uri in REDIRECT_URIS:
        assert [t for t in shown if uri in t], f"{uri} is not whole in one element of the plan card"
    assert DISPLAY_NAME in "\n".join(shown)
    assert "Who can sign in: Accounts in any organization" in shown
    assert "Create: Client secret" in shown and [t for t in shown if t.startswith("Federated credential: skipped")], shown
    assert not [t for t in shown if "web.redirectUris" in t], "Graph's property paths show only under Details"
    details = await check(page, f"Plan for '{AGENT}'", "plan-details", details="Microsoft Graph and Dataverse properties")
    assert [t for t in details if t.startswith("web.redirectUris")], "Details shows Graph's property paths"

    await page.get_by_role("button", name="Approve").last.click()
    await expect(page.get_by_text("Approved: the setup is running.").last).to_be_visible(timeout=20_000)
    for step in ("Copilot Studio", "Web channel"):
        await expect(page.get_by_text(f"Your turn: {step}", exact=False).last).to_be_visible(timeout=30_000)
        await page.get_by_role("button", name="Do it in the sandbox (emulated Copilot Studio)").last.click()
    done = f"'{AGENT}' is set up"
    await expect(page.get_by_text(done).last).to_be_visible(timeout=40_000)

    shown = await check(page, done, "completion")
    assert [t for t in shown if re.match(f"✓ (Created|Set up) the app registration '{re.escape(DISPLAY_NAME)}'", t)], shown
    assert [t for t in shown if re.match(r"✓ (Made|Set up) a client secret, expires \d{1,2} [A-Z][a-z]+ \d{4}, \d\d:\d\d UTC$", t)], shown
    assert [t for t in shown if t.startswith("✓ Turned on secured access for the web channel, in effect since ")], shown
    await check(page, done, "completion-details", details="Job ")
