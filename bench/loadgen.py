"""Load generator, run in its own process: sends Teams-shaped activities to a bot and times each turn.

It also serves the fake Bot Connector the bot replies to (`serviceUrl` points here), so it can check that
every turn produced a reply. A turn's latency is the POST to /api/messages until its response (the bot
sends its replies inside the turn, so they are included).

    python -m bench.loadgen --url http://127.0.0.1:3978/api/messages --conversations 16 --turns 400 \
        --script echo|setup [--fresh]
`--conversations` is how many run at once; with `--fresh` each one moves to a new conversation id after every pass
through the script (so 64 concurrent workers can walk through 1,000 conversations).
Prints one JSON object: turns, errors, replies, seconds, latencies (p50/p99/mean, ms) overall and per message text.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
import sys
import time
import uuid
from collections import Counter
from typing import Any
from urllib.parse import unquote

from aiohttp import ClientSession, ClientTimeout, TCPConnector, web

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
SCRIPTS: dict[str, list[str]] = {
    "echo": ["hello"],
    # a real turn of the setup dialog: start it (agent choice card), then cancel it (state read and written each time)
    "setup": ["/setup copilot", "cancel"],
}


def activity(text: str, conv: str, user: int, service_url: str) -> dict[str, Any]:
    return {
        "type": "message",
        "id": str(uuid.uuid4()),
        "timestamp": "2026-11-24T12:00:00.000Z",
        "channelId": "msteams",
        "serviceUrl": service_url,
        "from": {"id": f"29:user-{user}", "name": f"User {user}", "aadObjectId": f"00000000-0000-0000-0000-{user:012d}"},
        "conversation": {"id": conv, "conversationType": "personal", "tenantId": TENANT},
        "recipient": {"id": "28:bench-bot", "name": "Bench Bot"},
        "text": text,
        "textFormat": "plain",
        "locale": "en-US",
        "channelData": {"tenant": {"id": TENANT}},
    }


class Connector:
    """Counts replies per conversation."""

    def __init__(self) -> None:
        self.replies: Counter[str] = Counter()

    async def handle(self, request: web.Request) -> web.Response:
        parts = request.raw_path.split("/")
        if len(parts) > 3 and parts[1] == "v3" and parts[2] == "conversations":
            self.replies[unquote(parts[3])] += 1
        await request.read()
        return web.json_response({"id": str(uuid.uuid4())})


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


async def run(url: str, conversations: int, turns: int, script: str, run_id: str, fresh: bool = False) -> dict[str, Any]:
    connector = Connector()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", connector.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    service_url = f"http://127.0.0.1:{port}/"

    latencies: list[float] = []
    by_text: dict[str, list[float]] = {}
    errors: Counter[str] = Counter()
    used: set[str] = set()
    counter = itertools.count()
    texts = SCRIPTS[script]

    async with ClientSession(connector=TCPConnector(limit=conversations + 4), timeout=ClientTimeout(total=60)) as http:

        async def conversation(n: int) -> None:
            step = 0
            while next(counter) < turns:
                conv = f"a:bench-{run_id}-{n}" + (f"-{step // len(texts)}" if fresh else "")
                used.add(conv)
                text = texts[step % len(texts)]
                body = activity(text, conv, n, service_url)
                step += 1
                start = time.perf_counter()
                try:
                    async with http.post(url, json=body) as resp:
                        await resp.read()
                        if resp.status >= 300:
                            errors[f"http {resp.status}"] += 1
                            continue
                except Exception as exc:  # noqa: BLE001 - any failure is counted, the run goes on
                    errors[type(exc).__name__] += 1
                    continue
                latencies.append((time.perf_counter() - start) * 1000)
                by_text.setdefault(text, []).append(latencies[-1])

        started = time.perf_counter()
        await asyncio.gather(*(conversation(n) for n in range(conversations)))
        seconds = time.perf_counter() - started
    await runner.cleanup()
    return {
        "conversations": conversations,
        "turns": len(latencies),
        "errors": dict(errors),
        "replies": sum(connector.replies.values()),
        "turns_without_reply": max(0, len(latencies) - sum(connector.replies.values())),
        "seconds": seconds,
        "turns_per_s": len(latencies) / seconds if seconds else 0.0,
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": statistics.fmean(latencies) if latencies else 0.0,
        "conversations_used": len(used),
        "by_text": {t: {"turns": len(v), "p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99)} for t, v in by_text.items()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--conversations", type=int, default=1)
    parser.add_argument("--turns", type=int, default=200)
    parser.add_argument("--script", choices=sorted(SCRIPTS), default="echo")
    parser.add_argument("--run-id", default=uuid.uuid4().hex[:8])
    parser.add_argument("--fresh", action="store_true", help="a new conversation id after each pass through the script")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.url, args.conversations, args.turns, args.script, args.run_id, args.fresh))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
