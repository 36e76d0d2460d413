"""Activities to and from the JSON of the Bot Connector, without msrest's per-call cost.

msrest's `Model.serialize()` builds a Serializer and validates every field on each call (~0.4 ms for a reply with
a card, twice the rest of a turn). The wire format is simple: each model's `_attribute_map` names the JSON key of
each attribute, None is left out, dates are ISO 8601 and enums are their values; like msrest, properties a model
does not declare (kept in `additional_properties` when msrest reads them) are not sent.
`to_wire` does exactly that, with the attribute maps read once per class; a test checks that it gives msrest's
output for the activities this bot sends.

`from_wire` reads an inbound activity as msrest's `Model.deserialize` does (a third of a millisecond per turn there,
the largest single cost of a turn): each attribute from its JSON key by the type the attribute map names, keys a
model does not declare kept in `additional_properties`, ISO 8601 dates and byte arrays by msrest's own functions, and
any other type handed to msrest's deserializer. A property test checks that both give equal objects, or both refuse.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from enum import Enum
from typing import Any

from msrest.exceptions import DeserializationError
from msrest.serialization import Deserializer, Model

_FIELDS: dict[type, tuple[tuple[str, str], ...]] = {}
_READS: dict[type, tuple[tuple[tuple[str, str, str], ...], frozenset[str]]] = {}
_BASIC = {"str", "bool", "int", "float"}


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


def from_wire(cls: type, data: Any) -> Any:
    """`cls` read from JSON as `cls.deserialize(data)` reads it (DeserializationError where msrest raises one)."""
    reader = _Reader(cls)
    try:
        return reader.model(cls, data)
    except DeserializationError:
        raise
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        raise DeserializationError(f"Unable to deserialize to object: {cls.__name__}") from exc


class _Reader:
    def __init__(self, root: type) -> None:
        self.models: dict[str, type] = root._infer_class_models()  # type: ignore[attr-defined]
        self._msrest: Deserializer | None = None

    def model(self, cls: type, data: Any) -> Any:
        if data is None:
            return None
        fields, keys = _reads(cls)
        values = {attr: self.value(data.get(key), kind) for attr, key, kind in fields}
        try:
            obj = cls(**values)
        except TypeError as exc:
            raise DeserializationError(f"Unable to build a {cls.__name__}: {exc}") from exc
        extra = {k: data[k] for k in data.keys() - keys}
        if extra:
            obj.additional_properties = extra
        return obj

    def value(self, data: Any, kind: str) -> Any:
        if data is None:
            return None
        if kind == "str":
            return data if isinstance(data, str) else self.slow(data, kind)
        if kind == "object":
            return _plain(data)
        if kind[0] == "[" and kind[-1] == "]":
            if not isinstance(data, (list, set)):
                raise DeserializationError(f"Cannot deserialize as [{kind[1:-1]}] an object of type {type(data)}")
            return [self.value(item, kind[1:-1]) for item in data]
        if kind[0] == "{" and kind[-1] == "}" and isinstance(data, dict):
            return {k: self.value(v, kind[1:-1]) for k, v in data.items()}
        model = self.models.get(kind)
        if model is not None and isinstance(model, type) and issubclass(model, Model) and isinstance(data, dict):
            return self.model(model, data)
        return self.slow(data, kind)

    def slow(self, data: Any, kind: str) -> Any:
        """msrest's own reading, for everything but the common cases above (dates, bytes, odd values)."""
        if self._msrest is None:
            self._msrest = Deserializer(self.models)
        return self._msrest.deserialize_data(data, kind)


def _reads(cls: type) -> tuple[tuple[tuple[str, str, str], ...], frozenset[str]]:
    found = _READS.get(cls)
    if found is None:
        attribute_map: dict[str, dict[str, Any]] = getattr(cls, "_attribute_map", {})
        if any("." in spec["key"] for spec in attribute_map.values()) or getattr(cls, "_subtype_map", None) or \
                any(v.get("readonly") or v.get("constant") for v in getattr(cls, "_validation", {}).values()) or \
                "additional_properties" in attribute_map:
            raise TypeError(f"{cls.__name__} uses msrest features from_wire does not read")  # none of botbuilder's do
        fields = tuple((name, spec["key"], spec["type"]) for name, spec in attribute_map.items())
        found = _READS[cls] = (fields, frozenset(spec["key"] for spec in attribute_map.values()))
    return found


def _plain(data: Any) -> Any:
    """An 'object' value as msrest gives it: a copy of the JSON (msrest's generic object reading)."""
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_plain(v) for v in data]
    if isinstance(data, (str, bool, int, float)):
        return data
    return Deserializer().deserialize_object(data)
