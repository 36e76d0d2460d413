"""What the browser tests share: Debian's Chromium on the Microsoft 365 Agents Playground in front of a running bot
(only 127.0.0.1/localhost reachable from the page), a failure's HTML and screenshot kept, typing a message, finding a
card, and measuring a card as it is drawn (nothing cut off, no word broken in two)."""

from __future__ import annotations

import contextlib
import re
import shutil
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from tests.playground.test_playground import free_port

CHROMIUM = "/usr/bin/chromium"
OUT = Path(__file__).resolve().parents[2] / "test-output" / "browser"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
LOCAL = re.compile(r"^(https?|wss?)://(127\.0\.0\.1|localhost)(:\d+)?/|^(data|blob|about):")
ZWSP = "\u200b"

BROWSER = [
    pytest.mark.browser,
    pytest.mark.skipif(not Path(CHROMIUM).exists() or shutil.which("node") is None,
                       reason="needs Debian's chromium and Node.js (make test installs both)"),
]

# Every visible text element and button of a card: whether it is cut off (wider inside than its box, or reaching past
# the card) and where a line break falls between two letters or digits (a word broken in two).
MEASURE = r"""
(card) => {
  const letter = /[\p{L}\p{N}]/u;
  const box = card.getBoundingClientRect();
  const range = document.createRange();
  const found = [];
  for (const el of card.querySelectorAll('.ac-textBlock, .ac-richTextBlock, .ac-fact-title, .ac-fact-value, .ac-pushButton, .ac-pushButton-content > div')) {
    if (!el.offsetParent || !el.innerText.trim()) continue;
    const r = el.getBoundingClientRect();
    const clipped = el.scrollWidth > el.clientWidth || r.right > box.right + 0.5 || r.left < box.left - 0.5;
    const splits = [];
    let prev = null;
    const walk = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    while (walk.nextNode()) {
      const node = walk.currentNode;
      for (let i = 0; i < node.length; i++) {
        range.setStart(node, i); range.setEnd(node, i + 1);
        const rects = range.getClientRects();
        if (!rects.length) continue;
        const top = rects[0].top, ch = node.data[i];
        if (prev && top > prev.top + 2 && letter.test(prev.ch) && letter.test(ch)) splits.push(prev.ch + '|' + ch);
        prev = {top, ch};
      }
    }
    found.push({text: el.innerText, button: el.classList.contains('ac-pushButton'), clipped, scroll: el.scrollWidth,
                client: el.clientWidth, right: Math.round(r.right), edge: Math.round(box.right), splits});
  }
  return found;
}
"""


@contextlib.asynccontextmanager
async def playground_page(bot: Any, name: str, *, height: int = 1000) -> AsyncIterator[Any]:
    """The Playground in front of `bot`, in headless Chromium with only loopback reachable; a failure leaves the page's
    HTML and a screenshot as test-output/browser/`name`-failure.*."""
    from playwright.async_api import async_playwright

    from scripts.playground import Playground

    pg = Playground(bot.url.replace("127.0.0.1", "localhost"), free_port())
    await pg.start(timeout=60)
    OUT.mkdir(parents=True, exist_ok=True)
    try:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            context = await browser.new_context(viewport={"width": 1280, "height": height})
            await context.route("**/*", lambda route: route.continue_() if LOCAL.match(route.request.url) else route.abort())
            tab = await context.new_page()
            await tab.goto(pg.url, wait_until="networkidle")
            try:
                yield tab
            except BaseException:
                (OUT / f"{name}-failure.html").write_text(await tab.content())
                await tab.screenshot(path=str(OUT / f"{name}-failure.png"), full_page=True)
                raise
            finally:
                await browser.close()
    finally:
        await pg.stop()


async def shot(page: Any, name: str) -> None:
    await page.screenshot(path=str(OUT / f"{name}.png"), full_page=True)


async def say(page: Any, text: str) -> None:
    box = page.locator("[contenteditable=true]").first
    await box.click()
    await page.keyboard.type(text)
    await page.keyboard.press("Enter")


def card(page: Any, words: str) -> Any:
    return page.locator(".ac-adaptiveCard", has_text=words).last


async def measure(element: Any, where: str, *, buttons: bool = False) -> list[str]:
    """Fail if a text element of the card (and, with `buttons`, a button) is cut off or has a word broken across
    lines; the texts of its text elements, zero-width break opportunities removed."""
    found = [f for f in await element.evaluate(MEASURE) if buttons or not f["button"]]
    assert found, f"no text elements found on {where}"
    clipped = [f"{f['text'][:60]!r} (width {f['scroll']} in {f['client']}, right edge {f['right']} of the card's {f['edge']})"
               for f in found if f["clipped"]]
    assert not clipped, f"cut off {where}: {clipped}"
    split = [f"{f['text'][:60]!r}: {f['splits']}" for f in found if f["splits"]]
    assert not split, f"a word broken across lines {where}: {split}"
    return [f["text"].replace(ZWSP, "") for f in found if not f["button"]]
