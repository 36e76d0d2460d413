"""Activities to the JSON the Bot Connector expects, without msrest's per-call cost.

msrest's `Model.serialize()` builds a Serializer and validates every field on each call (~0.4 ms for a reply with
a card, twice the rest of a turn). The wire format is simple: each model's `_attribute_map` names the JSON key of
each attribute, None is left out, dates are ISO 8601 and enums are their values; like msrest, properties a model
does not declare (kept in `additional_properties` when msrest reads them) are not sent.
`to_wire` does exactly that, with the attribute maps read once per class; a test checks that it gives msrest's
output for the activities this bot sends.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from enum import Enum
from typing import Any

from msrest.serialization import Model

_FIELDS: dict[type, tuple[tuple[str, str], ...]] = {}


def _fields(cls: type) -> tuple[tuple[str, str], ...]:
    fields = _FIELDS.get(cls)
    if fields is None:
        attribute_map: dict[str, dict[str, Any]] = getattr(cls, "_attribute_map", {})
        fields = _FIELDS[cls] = tuple((name, spec["key"]) for name, spec in attribute_map.items() if name != "additional_properties")
    return fields


def to_wire(value: Any) -> Any:
    """A JSON-ready copy of a msrest model (or of a value holding models)."""
    if isinstance(value, Model):
        out: dict[str, Any] = {}
        for name, key in _fields(type(value)):
            item = getattr(value, name, None)
            if item is not None:
                out[key] = to_wire(item)
        return out
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value.value if isinstance(value, Enum) else value
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if isinstance(value, datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=timezone.utc)
        return stamp.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return to_wire(value.value)
    raise TypeError(f"cannot send a {type(value).__name__} to the Bot Connector")
