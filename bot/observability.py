"""What an operator watches: Prometheus metrics (`/metrics`) and structured logs (`LOG_FORMAT=json`).

Metrics: turns and their latency, jobs by status, Microsoft calls by service and status, the notifier's backlog and
dead letters, credential removals still pending. Log records carry the job id, the conversation id and the Microsoft
request id of what they are about, from context; a last filter masks anything shaped like a bearer token or a JWT, so
a mistake elsewhere cannot put one in a log.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import time
from typing import Any, Awaitable, Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from provisioning.core import current_job
from provisioning.core import last_request_id as request_id

conversation: contextvars.ContextVar[str | None] = contextvars.ContextVar("conversation", default=None)
_TOKEN = re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/=-]{12,}|eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.turns = Counter("copilot_setup_turns", "Activities the bot handled, by type and outcome", ["type", "outcome"], registry=self.registry)
        self.turn_seconds = Histogram("copilot_setup_turn_seconds", "Time to handle one activity", ["type"], registry=self.registry,
                                      buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
        self.jobs = Gauge("copilot_setup_jobs", "Setup jobs by status", ["status"], registry=self.registry)
        self.microsoft_calls = Counter("copilot_setup_microsoft_calls", "Calls to Microsoft Graph and Dataverse, by service and HTTP status",
                                       ["service", "status"], registry=self.registry)
        self.notifier_backlog = Gauge("copilot_setup_notifier_backlog", "Events whose cards are not delivered to Teams yet", registry=self.registry)
        self.dead_letters = Gauge("copilot_setup_dead_letters", "Cards Teams refused for good since this instance started", registry=self.registry)
        self.removals_pending = Gauge("copilot_setup_credential_removals_pending", "Credentials queued for removal from Entra, not yet confirmed",
                                      registry=self.registry)
        self.leader = Gauge("copilot_setup_notifier_leader", "1 if this instance posts to Teams (holds the notifier lease)", registry=self.registry)

    def microsoft(self, service: str, status: int) -> None:
        self.microsoft_calls.labels(service, str(status)).inc()

    async def render(self, refresh: Callable[["Metrics"], Awaitable[None]]) -> bytes:
        await refresh(self)
        return bytes(generate_latest(self.registry))

    def turn(self, kind: str, started: float, outcome: str) -> None:
        self.turns.labels(kind, outcome).inc()
        self.turn_seconds.labels(kind).observe(time.perf_counter() - started)


class Redact(logging.Filter):
    """Masks bearer tokens and JWTs in every record (the code logs none; this guards against a mistake)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = _TOKEN.sub(lambda m: (m.group(1) or "") + "[redacted]", message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }
        for key, value in (("job_id", current_job.get()), ("conversation_id", conversation.get()), ("request_id", request_id.get())):
            if value:
                entry[key] = value
        for key in ("job_id", "conversation_id", "request_id"):
            if getattr(record, key, None):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def configure_logging(log_format: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler()
    handler.addFilter(Redact())
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
        logging.Formatter.converter = time.gmtime
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per Microsoft call is noise; the audit log keeps request ids
