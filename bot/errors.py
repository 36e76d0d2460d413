"""The bot's own error tree (provisioning errors have theirs in provisioning/errors.py).

    BotError
    ├── ConfigError          missing or contradictory bot configuration; `variable` names it
    ├── Unauthenticated      an inbound request without a valid Bot Framework token; `reason` says which check failed
    └── ConnectorError       the Bot Connector (Teams) refused or failed a reply; `status`, `code`, `retry_after`
        └── TokenError       the bot could not get its own token to call the connector
"""

from __future__ import annotations

import json
from typing import Mapping


class BotError(Exception):
    pass


class ConfigError(BotError):
    def __init__(self, variable: str, message: str) -> None:
        super().__init__(message)
        self.variable = variable


class Unauthenticated(BotError):
    """Answered with 401. The reason is safe to return and log: it never includes the token."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ConnectorError(BotError):
    def __init__(self, message: str, *, status: int, code: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.retry_after = retry_after

    @property
    def transient(self) -> bool:
        """Worth trying again later: throttled, a precondition race, or the service failing."""
        return self.status in (408, 412, 429) or self.status >= 500

    @classmethod
    def from_response(cls, method: str, status: int, headers: Mapping[str, str], body: bytes) -> "ConnectorError":
        code, text = "", ""
        try:
            error = json.loads(body).get("error", {})
            code, text = str(error.get("code", "")), str(error.get("message", ""))
        except (ValueError, AttributeError):
            pass
        retry_after: float | None = None
        raw = headers.get("Retry-After", "")
        if raw.strip().isdigit():
            retry_after = float(raw.strip())
        message = f"The Bot Connector answered {status} to {method}" + (f": {code} {text}".rstrip() if code or text else "")
        return cls(message, status=status, code=code, retry_after=retry_after)


class TokenError(ConnectorError):
    def __init__(self, message: str, *, code: str = "token", transient: bool = True) -> None:
        super().__init__(message, status=0, code=code)
        self._transient = transient

    @property
    def transient(self) -> bool:
        return self._transient
