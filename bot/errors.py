"""The bot's own error tree (provisioning errors have theirs in provisioning/errors.py).

    BotError
    └── ConfigError     missing or contradictory bot configuration; `variable` names it
"""

from __future__ import annotations


class BotError(Exception):
    pass


class ConfigError(BotError):
    def __init__(self, variable: str, message: str) -> None:
        super().__init__(message)
        self.variable = variable
