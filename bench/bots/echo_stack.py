"""The echo bot (bench/bots/echo.py), started after importing the rest of the stack this project is built on:
botbuilder-dialogs, the microsoft-teams-cards models (with pydantic), msal and httpx. It answers as the echo bot does.

Not a peer for turns: the floor for a cold start. Any bot on this stack pays these imports before its first answer,
so the first answered turn of Copilot Setup Bot is reported against this bot too, to tell what the stack costs from
what the application adds.
"""

from __future__ import annotations

import botbuilder.dialogs  # noqa: F401 - imported for its cost
import httpx  # noqa: F401
import microsoft_teams.cards  # noqa: F401
import msal  # noqa: F401

from bench.bots import echo

if __name__ == "__main__":
    echo.main()
