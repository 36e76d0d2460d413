"""`make run`: the bot, against the local emulated Microsoft cloud unless a tenant is configured.

With no PROVISIONING_CLIENT_ID in the environment or `.env`, the sandbox starts in this process (state under
data/, PROPAGATION_DELAY shortened to 2 minutes unless set) and the bot is pointed at it. With a tenant
configured only the bot starts. Ctrl-C stops everything.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parents[1]
SANDBOX_PROPAGATION = "2m"


async def run() -> int:
    os.chdir(ROOT)
    from provisioning.config import environment

    env = environment(None, Path(".env"))
    sandbox = None
    if not env.get("PROVISIONING_CLIENT_ID"):
        from sandbox import FaultSettings, Sandbox, SandboxOptions

        delay = env.get("PROPAGATION_DELAY") or SANDBOX_PROPAGATION
        from provisioning.config import parse_duration

        sandbox = Sandbox(SandboxOptions(state_path=Path("data/sandbox.db"), cert_dir=Path("data/sandbox-certs"),
                                         faults=FaultSettings(replication_delay_s=3.0), propagation_delay=parse_duration(delay),
                                         publish_duration=timedelta(seconds=2)))
        await sandbox.start()
        env = {**env, **sandbox.env, "PROPAGATION_DELAY": delay}
        os.environ.update({k: v for k, v in sandbox.env.items() if k in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")})
    import app as bot_app
    from bot.errors import ConfigError
    from provisioning import ConfigurationError

    try:
        built = bot_app.build(env, dotenv=None)
    except (ConfigError, ConfigurationError) as exc:
        sys.stderr.write(f"Configuration: {exc.user_message() if isinstance(exc, ConfigurationError) else exc}\n")
        if sandbox:
            await sandbox.stop()
        return 2
    runner = web.AppRunner(built.web_app, access_log=None, shutdown_timeout=20)
    await runner.setup()
    await web.TCPSite(runner, built.settings.host, built.settings.port).start()
    url = f"http://{built.settings.host}:{built.settings.port}/api/messages"
    lines = [f"Copilot Setup Bot is listening on {url}"]
    playground = None
    if sandbox:
        from scripts.playground import Playground, PlaygroundUnavailable

        lines += [
            "No tenant is configured, so it runs against the local emulated Microsoft cloud (the sandbox):",
            f"  Dataverse environments: {sandbox.env['DATAVERSE_URL']}",
            f"  Sandbox operator endpoint: {sandbox.env['SANDBOX_URL']}/_sandbox/state",
            f"  Its app registrations and agents, read-only: {sandbox.env.get('SANDBOX_PORTAL_URL', '')}",
            f"  'Require secured access' takes {env['PROPAGATION_DELAY']} here instead of up to 2 hours.",
        ]
        playground = Playground(url.replace("127.0.0.1", "localhost"), int(env.get("PLAYGROUND_PORT", "56150")))
        try:
            await playground.start()
            lines.append(f"Open {playground.url} in your browser (the Microsoft 365 Agents Playground) and type /setup copilot.")
        except PlaygroundUnavailable as exc:
            playground = None
            lines.append(f"The Agents Playground could not start ({exc}); any Bot Framework client pointed at {url} works.")
    lines.append("Press Ctrl-C to stop.")
    print("\n".join(lines), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("Stopping…", flush=True)
    if playground:
        await playground.stop()
    await runner.cleanup()
    if sandbox:
        await sandbox.stop()
    return 0


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return asyncio.run(run())


if __name__ == "__main__":
    raise SystemExit(main())
