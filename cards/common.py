"""Small builders shared by the cards: plain text, a field's error line, the finished card dict."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

import microsoft_teams.cards as ac


def title(text: str) -> ac.TextBlock:
    return ac.TextBlock(text=text, size="Medium", weight="Bolder", wrap=True)


def text(value: str, *, subtle: bool = False, color: str | None = None, weight: str | None = None) -> ac.TextBlock:
    return ac.TextBlock(text=value, wrap=True, is_subtle=subtle or None, color=color, weight=weight)


def error_line(message: str | None) -> list[ac.TextBlock]:
    """A field's error, shown right under its input."""
    return [ac.TextBlock(text=message, wrap=True, color="Attention", spacing="None", size="Small")] if message else []


def facts(pairs: Sequence[tuple[str, str]]) -> ac.FactSet:
    return ac.FactSet(facts=[ac.Fact(title=k, value=v or "—") for k, v in pairs])


def utc(moment: datetime | None) -> str:
    if moment is None:
        return "—"
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def finish(body: Sequence[Any], actions: Sequence[Any] = ()) -> dict[str, Any]:
    card = ac.AdaptiveCard(body=list(body), actions=list(actions) or None)
    data: dict[str, Any] = card.model_dump(by_alias=True, exclude_none=True)
    data["version"] = "1.5"
    data["$schema"] = "http://adaptivecards.io/schemas/adaptive-card.json"
    return data
