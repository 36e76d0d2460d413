"""The whole bot idle on PostgreSQL: the worker and the notifier wait for announced changes instead of querying the
database every poll, and the cards of a setup approved after a quiet spell still arrive at once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp

from sandbox import Sandbox
from tests.fixtures.botapp import start_bot
from tests.fixtures.connector import Connector
from tests.fixtures.teams import RILEY, personal
from tests.provisioning.helpers import count_round_trips

from .test_jobs import approved_setup


async def test_an_idle_bot_waits_for_changes_and_posts_the_cards_of_a_new_setup_at_once(
        sandbox: Sandbox, tmp_path: Path, postgres_url: str, connector: Connector) -> None:
    async with aiohttp.ClientSession() as session:
        # a 20 s lease: the notifier renews it every 5 s, the idle poll; the worker sweeps every 5 s
        bot = await start_bot(sandbox, tmp_path / "bot", session, DATABASE_URL=postgres_url, LEASE_TTL="20s")
        try:
            db = bot.app.store.db
            assert db.announces_changes
            await asyncio.sleep(1.5)  # the first passes of a fresh start
            trips = count_round_trips(db)
            await asyncio.sleep(3.0)
            # before: the worker's ~3 queries and the notifier's ~3 every 0.05 s poll, ~350 in 3 s
            assert len(trips) <= 16, f"{len(trips)} round trips to the database in 3 s of idling: {trips}"

            started = time.monotonic()
            talk, mark, _ = await approved_setup(bot, connector, personal(RILEY))  # the progress card is the notifier's post
            await talk.expect("Your turn: Copilot Studio: authenticate manually", after=mark)
            assert time.monotonic() - started < 4.0, "the notifier waited for its idle poll instead of the announced events"
        finally:
            await bot.runner.cleanup()


async def test_a_standby_instance_polls_the_notifier_lease_rarely_and_takes_over_within_a_tenth_of_it(
        sandbox: Sandbox, tmp_path: Path, postgres_url: str, connector: Connector) -> None:
    async with aiohttp.ClientSession() as session:
        state = tmp_path / "bots"  # one vault key for both instances, as on App Service
        leader = await start_bot(sandbox, state, session, DATABASE_URL=postgres_url, LEASE_TTL="20s", INSTANCE_ID="bot-1")
        standby = await start_bot(sandbox, state, session, DATABASE_URL=postgres_url, LEASE_TTL="20s", INSTANCE_ID="bot-2")
        running = [leader, standby]
        try:
            await asyncio.sleep(1.5)
            assert leader.app.notifier.fence is not None and standby.app.notifier.fence is None
            trips = count_round_trips(standby.app.store.db)
            await asyncio.sleep(3.0)
            # before: the standby tried the lease (a transaction) on every 0.05 s poll, ~60 in 3 s, beside its worker
            assert len(trips) <= 10, f"{len(trips)} round trips to the database in 3 s of standing by: {trips}"

            running.remove(leader)
            await leader.runner.cleanup()  # a redeploy: the leader stops and gives the lease back
            released = time.monotonic()
            while standby.app.notifier.fence is None:
                assert time.monotonic() - released < 2.0 + 1.0, "the standby did not take the lease within a tenth of it"
                await asyncio.sleep(0.05)
            talk, mark, _ = await approved_setup(standby, connector, personal(RILEY))
            await talk.expect("Your turn: Copilot Studio: authenticate manually", after=mark)
        finally:
            for bot in running:
                await bot.runner.cleanup()
