"""Composition root: configuration → the store (SQLite or PostgreSQL) → provisioning service → adapter → bot → notifier → HTTP app."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from aiohttp import web

import cards
from bot.adapter import create_adapter
from bot.authz import AccessPolicy
from bot.bot import SetupBot
from bot.config import BotSettings
from bot.conversations import ConversationStore
from bot.errors import ConfigError
from bot.job_actions import JobActions
from bot.notifier import Notifier
from bot.observability import Metrics, configure_logging
from bot.state import SetupConversationState, SetupUserState
from bot.storage import BotStorage
from bot.web import create_app
from dialogs.setup_dialog import SetupDialog
from provisioning import ConfigurationError, JobStatus, ProvisioningService, Settings
from provisioning.config import environment
from store import Store, open_database

log = logging.getLogger("copilot_setup_bot")


@dataclass
class BotApp:
    web_app: web.Application
    settings: BotSettings
    service: ProvisioningService
    storage: BotStorage
    store: Store
    notifier: Notifier


def _report_card_loading(loading: asyncio.Future[None]) -> None:
    if not loading.cancelled() and loading.exception() is not None:
        log.error("the Adaptive Card models did not load: %r", loading.exception())


def build(env: Mapping[str, str] | None = None, *, dotenv: Path | None = Path(".env"), service_options: dict | None = None) -> BotApp:  # type: ignore[type-arg]
    settings = BotSettings.from_env(env, dotenv=dotenv)
    provisioning_settings = Settings.from_env(env, dotenv=dotenv)
    store = Store(open_database(provisioning_settings.database))  # one database for everything durable
    storage = BotStorage(store.kv)
    env_now = environment(env, dotenv)
    instance = (env_now.get("INSTANCE_ID") or env_now.get("WEBSITE_INSTANCE_ID") or env_now.get("CONTAINER_APP_REPLICA_NAME") or "").strip() \
        or f"{socket.gethostname()}:{settings.port}"
    service = ProvisioningService(provisioning_settings, store=store, instance=instance, **(service_options or {}))
    adapter = create_adapter(settings)
    policy = AccessPolicy(settings)
    conversations = ConversationStore(storage)
    job_actions = JobActions(service=service, conversations=conversations, policy=policy, bot_settings=settings)
    dialog = SetupDialog(service=service, policy=policy, job_actions=job_actions)
    bot = SetupBot(conversation_state=SetupConversationState(storage), user_state=SetupUserState(storage), service=service,
                   policy=policy, job_actions=job_actions, dialog=dialog)
    notifier = Notifier(connectors=adapter.connectors, app_id=settings.app_id, service=service, conversations=conversations,
                        kv=store.kv, locks=store.locks, lease_ttl=max(5.0, provisioning_settings.lease_ttl.total_seconds()),
                        poll_interval=float((service_options or {}).get("worker_poll_interval", 1.0)), instance=instance)

    warm_up: list[asyncio.Future[None]] = []

    async def startup(_app: web.Application) -> None:
        # The Adaptive Card models load in a worker thread while the bot starts answering (see cards/__init__.py);
        # /readyz reports "cards" until they are in.
        await store.db.open()
        await service.start()
        await notifier.start()
        loading = asyncio.ensure_future(asyncio.to_thread(cards.load_all))
        loading.add_done_callback(_report_card_loading)
        warm_up.append(loading)

    async def cards_loaded() -> bool:
        return bool(warm_up) and warm_up[0].done() and not warm_up[0].cancelled() and warm_up[0].exception() is None

    async def shutdown(_app: web.Application) -> None:
        await notifier.stop()
        await service.close()
        await store.db.close()

    async def notifier_alive() -> bool:
        return notifier.alive

    metrics = Metrics()
    service.core.observers.append(metrics.microsoft)

    async def refresh(m: Metrics) -> None:
        counts = await store.jobs.counts()
        for status in JobStatus:
            m.jobs.labels(status.value).set(counts.get(status.value, 0))
        m.notifier_backlog.set(notifier.backlog)
        m.dead_letters.set(notifier.dead_letters)
        m.removals_pending.set(await store.removals.pending())
        m.leader.set(1 if notifier.fence is not None else 0)

    web_app = create_app(settings=settings, adapter=adapter, bot=bot, metrics=metrics, refresh_metrics=refresh,
                         readiness={"database": store.db.ping, "provisioning": service.ready, "notifier": notifier_alive,
                                    "cards": cards_loaded},
                         on_startup=[startup], on_shutdown=[shutdown])
    return BotApp(web_app, settings, service, storage, store, notifier)


def main() -> int:
    log_format = os.environ.get("LOG_FORMAT", "").strip().lower() or "text"
    if log_format not in ("text", "json"):
        sys.stderr.write(f"Configuration: LOG_FORMAT must be text or json, got '{log_format}'.\n")
        return 2
    configure_logging(log_format)
    try:
        app = build()
    except (ConfigError, ConfigurationError) as exc:
        message = exc.user_message() if isinstance(exc, ConfigurationError) else str(exc)
        sys.stderr.write(f"Configuration: {message}\n")
        return 2
    log.info("Copilot Setup Bot listening on http://%s:%d/api/messages", app.settings.host, app.settings.port)
    web.run_app(app.web_app, host=app.settings.host, port=app.settings.port, print=None, access_log=None, shutdown_timeout=20)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
