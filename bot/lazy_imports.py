"""Recognizers-Text, loaded only if a prompt ever needs it.

`botbuilder.dialogs` imports every prompt, and with them Microsoft's Recognizers-Text number, choice and date-time
recognizers (~110 ms and several MB at start). This bot's only prompt is a TextPrompt, which never calls them. The
dialogs library uses those recognizers only inside functions (`recognize_number`, `recognize_boolean`,
`recognize_datetime`, `NumberRecognizer`), so until a function is called, a stand-in module answers the import with
stand-ins that load the real module on first call. The one thing needed at import time, `recognizers_text`'s
`Culture` (and `ModelResult`), comes from its own small submodules; its utilities (regex, emoji tables) load with
the rest, if ever. Installed once, before `botbuilder.dialogs` is first imported.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any

DEFERRED: dict[str, tuple[str, ...]] = {
    "recognizers_number": ("NumberModel", "NumberRecognizer", "OrdinalModel", "recognize_number"),
    "recognizers_choice": ("recognize_boolean",),
    "recognizers_date_time": ("recognize_datetime",),
}
# recognizers_text: the names botbuilder.dialogs imports, and the light submodule that defines each
LIGHT = {"recognizers_text": {"Culture": "recognizers_text.culture", "ModelResult": "recognizers_text.model"}}
_lock = threading.RLock()  # loading one recognizer package loads recognizers_text too
_real: dict[str, types.ModuleType] = {}


def _load(module: str) -> types.ModuleType:
    with _lock:
        real = _real.get(module)
        if real is None:
            stub = sys.modules.pop(module, None)
            try:
                real = _real[module] = importlib.import_module(module)
            except BaseException:
                if stub is not None:
                    sys.modules[module] = stub
                raise
        return real


class Deferred:
    """Stands for `module.name` until called; then it is the real thing."""

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(_load(self.module), self.name)(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<deferred {self.module}.{self.name}>"


class _StandIn(types.ModuleType):
    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # the import system probes __path__, __spec__...: a stand-in has none
            raise AttributeError(name)
        if name in DEFERRED.get(self.__name__, ()):
            return Deferred(self.__name__, name)
        home = LIGHT.get(self.__name__, {}).get(name)
        if home is not None:
            return getattr(importlib.import_module(home), name)
        return getattr(_load(self.__name__), name)


def install() -> None:
    """Put stand-ins in place for the recognizers not imported yet (idempotent)."""
    for module in DEFERRED:
        if module not in sys.modules:
            sys.modules[module] = _StandIn(module)
    for package in LIGHT:
        if package not in sys.modules:
            spec = importlib.util.find_spec(package)
            if spec is None or spec.submodule_search_locations is None:
                continue
            stand_in = _StandIn(package)
            stand_in.__path__ = list(spec.submodule_search_locations)  # its submodules import without its __init__
            sys.modules[package] = stand_in
