"""Copilot Setup Bot (app.py, unchanged) started with one start-up change applied from outside, to measure what a change
would do to the first turn after a cold start before anyone makes it in the product. Bench-only: nothing here runs in
production. BENCH_VARIANT picks the change:

    as-is           nothing changed
    cards-first     the Adaptive Card models are imported before the bot listens (no import thread racing the turn)
    no-warm-up      the card warm-up thread does nothing: a turn imports only the card module it needs, inline
    agents-warm     the Microsoft path is warmed as the service starts: the agent list is read once in the background
                    (token from Entra, TLS to Dataverse, httpx's async backend imported), so the first turn finds it cached
    no-warm-up+agents-warm   both of the last two
"""

from __future__ import annotations

import asyncio
import os
import runpy
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VARIANTS = ("as-is", "cards-first", "no-warm-up", "agents-warm", "no-warm-up+agents-warm")


def _warm_agents() -> None:
    from provisioning import ProvisioningService

    original = ProvisioningService.start
    pending: list[asyncio.Future[Any]] = []

    async def start(self: ProvisioningService) -> None:
        await original(self)
        pending.append(asyncio.ensure_future(self.list_agents()))

    ProvisioningService.start = start  # type: ignore[method-assign]


def apply(variant: str) -> None:
    if variant not in VARIANTS:
        raise SystemExit(f"BENCH_VARIANT must be one of {', '.join(VARIANTS)}, got {variant!r}")
    import cards

    if variant == "cards-first":
        cards.load_all()
    if "no-warm-up" in variant:
        cards.load_all = lambda: None
    if "agents-warm" in variant:
        _warm_agents()


if __name__ == "__main__":
    apply(os.environ.get("BENCH_VARIANT", "as-is"))
    sys.path.insert(0, str(ROOT))
    sys.argv = [str(ROOT / "app.py")]
    runpy.run_path(str(ROOT / "app.py"), run_name="__main__")
