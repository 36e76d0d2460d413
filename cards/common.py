"""Small builders shared by the cards: plain text, a field's error line, times, the finished card dict."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any, Sequence
from urllib.parse import urlsplit

import microsoft_teams.cards as ac

from provisioning.dates import when
from provisioning.models import AgentSummary

FACT_VALUE_LIMIT = 40  # Teams clips longer FactSet values; anything longer goes in a wrapped TextBlock
ZWSP = "\u200b"
_LONG_TOKEN = re.compile(r"\S{25,}")
_CHUNK = re.compile(r".{1,20}", re.DOTALL)
_AFTER = re.compile(r"(/+|[_=&:](?!/))")
_BEFORE = re.compile(r"(?<=[^\s/.\u200b])([.?#])")


def title(text: str) -> ac.TextBlock:
    return ac.TextBlock(text=text, size="Medium", weight="Bolder", wrap=True)


def text(value: str, *, subtle: bool = False, color: str | None = None, weight: str | None = None,
         spacing: str | None = None) -> ac.TextBlock:
    return ac.TextBlock(text=value, wrap=True, is_subtle=subtle or None, color=color, weight=weight, spacing=spacing)


def heading(value: str, *, color: str | None = None) -> ac.TextBlock:
    """A bold line that starts a group of lines (a label, a section)."""
    return ac.TextBlock(text=value, wrap=True, weight="Bolder", color=color)


def breakable(value: str) -> str:
    """Long unbroken tokens (URIs, Graph paths, issuers) get zero-width spaces after '/', '_', '=', '&', ':' and before
    '.', '?', '#'. Browsers break a URI at none of these, so in a narrow window Teams would cut it mid-word (or clip it);
    with them it wraps where a typesetter would break a URL. A stretch of more than 20 characters with none of these
    breaks every 20. The text looks the same; short values are left alone."""
    def split(token: str) -> str:
        marked = _BEFORE.sub(ZWSP + r"\1", _AFTER.sub(r"\1" + ZWSP, token))
        # a run with no such place (a random subject identifier, a key) breaks every 20 characters instead
        return ZWSP.join(ZWSP.join(_CHUNK.findall(piece)) or piece for piece in marked.split(ZWSP))

    return _LONG_TOKEN.sub(lambda m: split(m.group()), value)


def error_line(message: str | None) -> list[ac.TextBlock]:
    """A field's error, shown right under its input."""
    return [ac.TextBlock(text=message, wrap=True, color="Attention", spacing="None", size="Small")] if message else []


def facts(pairs: Sequence[tuple[str, str]]) -> ac.FactSet:
    """Short label/value pairs only (ids, names, dates): Teams clips a FactSet value that does not fit."""
    return ac.FactSet(facts=[ac.Fact(title=k, value=v or "—") for k, v in pairs])


def utc(moment: datetime | date | str | float | None) -> str:
    """The one way cards show a time: `31 May 2027, 07:45 UTC` (provisioning/dates.py)."""
    return when(moment)


def environment_label(agent: AgentSummary) -> str:
    """The agent's environment by its friendly name, else its URL's host (never host:port: the port says nothing)."""
    return agent.environment_name or urlsplit(agent.environment_url).hostname or agent.environment_url


def finish(body: Sequence[Any], actions: Sequence[Any] = ()) -> dict[str, Any]:
    card = ac.AdaptiveCard(body=list(body), actions=list(actions) or None)
    data: dict[str, Any] = card.model_dump(by_alias=True, exclude_none=True)
    data["version"] = "1.5"
    data["$schema"] = "http://adaptivecards.io/schemas/adaptive-card.json"
    return data
