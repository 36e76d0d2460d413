"""Bot state (dialog stacks, prompt options, plain values) to JSON and back, fast and from a known set of classes.

botbuilder hashes the whole state with jsonpickle three times per turn (to tell whether it changed) and stores
it with jsonpickle, about a millisecond per turn for this bot's dialog. This codec writes the same information
as plain JSON: dicts, lists and scalars as themselves, datetimes as ISO text, and objects of botbuilder's own
classes (DialogState, DialogInstance, PromptOptions, schema models, enums) as their class and attributes. Reading
only ever creates objects of classes from the `botbuilder` package, never an arbitrary class a database row names:
a row holding anything else (a jsonpickle document of an earlier version, say) is refused as unreadable, and a
value the codec cannot write this way is refused when it is saved. Nothing read from the database runs code.
"""

from __future__ import annotations

import importlib
import json
from datetime import datetime
from enum import Enum
from typing import Any

TRUSTED = ("botbuilder.",)


class UnreadableState(ValueError):
    """A stored document this codec does not read (it never falls back to unpickling)."""
_SCALARS = (str, int, float, bool, type(None))


def encode(value: Any) -> Any:
    if type(value) in _SCALARS:
        return value
    if isinstance(value, dict):
        if all(type(k) is str for k in value):
            body = {k: encode(v) for k, v in value.items()}
            return {"$d": body} if any(k.startswith("$") for k in value) else body
        raise TypeError("bot state may only hold dicts with string keys")
    if isinstance(value, list):
        return [encode(v) for v in value]
    if isinstance(value, tuple):
        return {"$tuple": [encode(v) for v in value]}
    if isinstance(value, datetime):
        return {"$dt": value.isoformat()}
    cls = type(value)
    if cls.__module__.startswith(TRUSTED) and isinstance(value, Enum):
        return {"$e": f"{cls.__module__}:{cls.__qualname__}", "$v": encode(value.value)}
    if cls.__module__.startswith(TRUSTED) and hasattr(value, "__dict__"):
        return {"$t": f"{cls.__module__}:{cls.__qualname__}", "$v": {k: encode(v) for k, v in vars(value).items()}}
    raise TypeError(f"bot state may not hold a {cls.__module__}.{cls.__qualname__}: only plain data and botbuilder's own classes")


def decode(value: Any) -> Any:
    if isinstance(value, list):
        return [decode(v) for v in value]
    if not isinstance(value, dict):
        return value
    if "$e" in value:
        return _class(value["$e"])(decode(value["$v"]))
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
        raise UnreadableState("the document holds a pickled object")
    return {k: decode(v) for k, v in value.items()}


_CLASSES: dict[str, type] = {}


def _class(name: str) -> type:
    cls = _CLASSES.get(name)
    if cls is None:
        module, _, qualname = name.partition(":")
        if not module.startswith(TRUSTED) or not qualname:
            raise UnreadableState(f"the document names a class outside botbuilder: {name}")
        try:
            target: Any = importlib.import_module(module)
            for part in qualname.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError):
            raise UnreadableState(f"the document names a class this version does not have: {name}") from None
        if not isinstance(target, type):
            raise UnreadableState(f"the document names something that is not a class: {name}")
        cls = _CLASSES[name] = target
    return cls


def dumps(value: Any) -> str:
    """The stored form: a versioned JSON document."""
    return json.dumps({"$codec": 1, "v": encode(value)}, separators=(",", ":"))


def loads(text: str) -> Any:
    """Reads what `dumps` wrote; anything else raises UnreadableState (never unpickled)."""
    try:
        document = json.loads(text)
    except ValueError:
        raise UnreadableState("the document is not JSON") from None
    if isinstance(document, dict) and document.get("$codec") == 1:
        return decode(document["v"])
    raise UnreadableState("the document was not written by this codec (an earlier version's jsonpickle row?)")


def fingerprint(value: Any) -> str:
    """Equal for equal state, different when anything in it changed: what botbuilder's change check needs."""
    return json.dumps(encode(value), separators=(",", ":"))
