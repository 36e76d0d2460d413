"""Fixtures for this suite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest


@pytest.fixture
def backend() -> dict[str, str]:
    """This suite runs on the embedded SQLite backend only (the storage, provisioning and bot suites cover both)."""
    return {}


@pytest.fixture
async def page(running_bot: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """The Playground in front of the bot, in Chromium; a failed test leaves the page's HTML and a screenshot."""
    from tests.browser.harness import playground_page

    async with playground_page(running_bot, request.node.name) as tab:
        yield tab
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            raise RuntimeError("test failed")  # keeps the page's HTML and a screenshot
