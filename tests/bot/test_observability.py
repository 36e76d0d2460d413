"""What an operator watches: /metrics in Prometheus text format, /readyz covering the database, and structured logs
that carry the job, the conversation and the Microsoft request id — never a token."""

from __future__ import annotations

import io
import json
import logging

import aiohttp

from bot.observability import JsonFormatter, Redact
from provisioning.core import current_job, last_request_id
from tests.e2e.helpers import Conversation
from tests.fixtures.connector import Connector
from tests.fixtures.teams import RILEY, personal


async def test_metrics_and_readiness_over_http(running_bot, connector: Connector) -> None:  # type: ignore[no-untyped-def]
    base = running_bot.url.removesuffix("/api/messages")
    talk = Conversation(running_bot, connector, personal(RILEY))
    mark = await talk.say(RILEY, "/setup copilot")
    await talk.expect("Set up an agent: 1 of 2", after=mark)
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/readyz") as r:
            ready = await r.json()
            assert r.status == 200 and "database" in ready["checks"]
        async with http.get(f"{base}/metrics") as r:
            assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            text = await r.text()
    assert 'copilot_setup_turns_total{outcome="ok",type="message"} 1.0' in text
    assert "copilot_setup_turn_seconds_bucket" in text
    assert 'copilot_setup_microsoft_calls_total{service="dataverse",status="200"}' in text, "the agent list was read from Dataverse"
    assert 'copilot_setup_jobs{status="running"} 0.0' in text
    for name in ("copilot_setup_notifier_backlog", "copilot_setup_dead_letters", "copilot_setup_credential_removals_pending",
                 "copilot_setup_notifier_leader"):
        assert f"\n{name} " in text, name


def test_json_logs_carry_context_and_never_a_token() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(Redact())
    logger = logging.getLogger("test.observability")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    job, request = current_job.set("job-42"), last_request_id.set("req-7")
    try:
        logger.info("calling Graph with Authorization: Bearer %s", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl")
    finally:
        current_job.reset(job)
        last_request_id.reset(request)
        logger.removeHandler(handler)
    entry = json.loads(out.getvalue())
    assert entry["job_id"] == "job-42" and entry["request_id"] == "req-7" and entry["level"] == "INFO"
    assert "eyJ" not in entry["message"] and "[redacted]" in entry["message"]
