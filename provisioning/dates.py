"""The one way the bot writes a time for people: `31 May 2027, 07:45 UTC` (cards and messages alike)."""

from __future__ import annotations

from datetime import date, datetime, timezone

MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October", "November", "December")


def when(moment: datetime | date | str | float | None) -> str:
    """The one way to show a time: `31 May 2027, 07:45 UTC`.

    Accepts datetimes (naive ones are taken as UTC) and ISO 8601 strings as Graph writes them
    (`2027-05-31T07:45:12Z`, `2027-05-31T07:45:12.0000000Z`); a date alone shows as `31 May 2027`.
    A string that is not a time is shown as it is, rather than hidden."""
    if moment is None or moment == "":
        return "—"
    if isinstance(moment, (int, float)):
        moment = datetime.fromtimestamp(moment, timezone.utc)
    if isinstance(moment, str):
        try:
            parsed = datetime.fromisoformat(moment.strip())
        except ValueError:
            return moment
        if "T" not in moment and " " not in moment.strip():
            return _day(parsed)
        moment = parsed
    if not isinstance(moment, datetime):
        return _day(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    moment = moment.astimezone(timezone.utc)
    return f"{_day(moment)}, {moment:%H:%M} UTC"


def _day(day: date) -> str:
    return f"{day.day} {MONTHS[day.month - 1]} {day.year}"


def duration(seconds: float) -> str:
    """`2 hours`, `90 minutes`, `1 second`: a whole number of the largest unit that divides it (else seconds)."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds:g} second{'s' if seconds != 1 else ''}"
