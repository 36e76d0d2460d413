"""Bot state (dialog stacks, prompt options, plain values) to JSON and back, fast and from a known set of classes.

botbuilder hashes the whole state with jsonpickle three times per turn (to tell whether it changed) and stores
it with jsonpickle, about a millisecond per turn for this bot's dialog. This codec writes the same information
as plain JSON: dicts, lists and scalars as themselves, datetimes as ISO text, and objects of botbuilder's own
classes (DialogState, DialogInstance, PromptOptions, schema models) as their class and attributes. Reading only
ever creates objects of classes from the `botbuilder` package, never an arbitrary class a database row names.
Anything else is handed to jsonpickle, as before.
"""

from __future__ import annotations

import importlib
import json
from datetime import datetime
from enum import Enum
from typing import Any

import jsonpickle

TRUSTED = ("botbuilder.",)
_SCALARS = (str, int, float, bool, type(None))


def encode(value: Any) -> Any:
    if type(value) in _SCALARS:
        return value
    if isinstance(value, dict):
        if all(type(k) is str for k in value):
            body = {k: encode(v) for k, v in value.items()}
            return {"$d": body} if any(k.startswith("$") for k in value) else body
        return {"$jp": jsonpickle.encode(value)}
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    cls = type(value)
    if cls.__module__.startswith(TRUSTED) and hasattr(value, "__dict__") and not isinstance(value, Enum):
        return {"$t": f"{cls.__module__}:{cls.__qualname__}", "$v": {k: encode(v) for k, v in vars(value).items()}}
    return {"$jp": jsonpickle.encode(value)}


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "$t" in value:
        cls = _class(value["$t"])
        obj: Any = object.__new__(cls)
        obj.__dict__.update({k: decode(v) for k, v in value["$v"].items()})
        return obj
    if "$d" in value:
        return {k: decode(v) for k, v in value["$d"].items()}
    if "$dt" in value:
        return datetime.fromisoformat(value["$dt"])
    if "$tuple" in value:
        return tuple(decode(v) for v in value["$tuple"])
    if "$jp" in value:
        return jsonpickle.decode(value["$jp"])
    return {k: decode(v) for k, v in value.items()}


_CLASSES: dict[str, type] = {}


def _class(name: str) -> type:
    cls = _CLASSES.get(name)
    if cls is None:
        module, _, qualname = name.partition(":")
        if not module.startswith(TRUSTED) or not qualname:
            raise ValueError(f"state names a class outside botbuilder: {name}")
        target: Any = importlib.import_module(module)
        for part in qualname.split("."):
            target = getattr(target, part)
        if not isinstance(target, type):
            raise ValueError(f"state names something that is not a class: {name}")
        cls = _CLASSES[name] = target
    return cls


def dumps(value: Any) -> str:
    """The stored form: a versioned JSON document."""
    return json.dumps({"$codec": 1, "v": encode(value)}, separators=(",", ":"))


def loads(text: str) -> Any:
    """Reads what `dumps` wrote, and documents stored by earlier versions (jsonpickle)."""
    document = json.loads(text)
    if isinstance(document, dict) and document.get("$codec") == 1:
        return decode(document["v"])
    return jsonpickle.decode(text)


def fingerprint(value: Any) -> str:
    """Equal for equal state, different when anything in it changed: what botbuilder's change check needs."""
    return json.dumps(encode(value), separators=(",", ":"))
