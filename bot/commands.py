"""What a typed message asks for: `/setup copilot`, `setup copilot` or `@Bot setup copilot`, `status`, `remove copilot`, `cancel`, `help`."""

from __future__ import annotations

import enum
import re

from botbuilder.core import TurnContext
from botbuilder.schema import Activity

_MENTION = re.compile(r"<at[^>]*>.*?</at>", re.IGNORECASE | re.DOTALL)


class Command(enum.Enum):
    SETUP = "setup"
    STATUS = "status"
    CANCEL = "cancel"
    HELP = "help"
    REMOVE = "remove"
    UNKNOWN = "unknown"
    NONE = "none"


ALIASES = {
    "setup copilot": Command.SETUP, "set up copilot": Command.SETUP, "setup": Command.SETUP,
    "status": Command.STATUS, "setup status": Command.STATUS,
    "remove copilot": Command.REMOVE, "remove setup": Command.REMOVE, "remove": Command.REMOVE,
    "cancel": Command.CANCEL, "stop": Command.CANCEL,
    "help": Command.HELP, "?": Command.HELP,
}


def message_text(activity: Activity) -> str:
    """The text with the bot's @mention removed, trimmed."""
    text = activity.text or ""
    try:
        stripped = TurnContext.remove_recipient_mention(activity)
        if stripped is not None:
            text = stripped
    except (AttributeError, TypeError, re.error):
        pass
    return _MENTION.sub(" ", text).strip()


def parse(text: str) -> Command:
    cleaned = " ".join(text.replace("\u00a0", " ").split()).lower().lstrip("/").strip()
    if not cleaned:
        return Command.NONE
    return ALIASES.get(cleaned, Command.UNKNOWN)
