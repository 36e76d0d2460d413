"""botbuilder `Storage` over the store's key-value documents (SQLite or PostgreSQL): durable conversation and user
state, with etag concurrency as the interface defines it (None or "*" write unconditionally; "" is an error; any other
etag must match). Documents are written by bot/state_codec.py (plain JSON, botbuilder classes only); a stored row it
cannot read (an earlier version's jsonpickle, or anything that names another class) is refused, logged and treated
as missing, never executed."""

from __future__ import annotations

import copy
import logging
from typing import Any, Dict, List

from botbuilder.core import Storage, StoreItem

from store import KeyValue

from . import state_codec

log = logging.getLogger(__name__)


def _etag_of(item: Any) -> str | None:
    if isinstance(item, dict):
        return item.get("e_tag")
    return getattr(item, "e_tag", None)


class BotStorage(Storage):  # type: ignore[misc]
    def __init__(self, kv: KeyValue) -> None:
        super().__init__()
        self.kv = kv

    async def read(self, keys: List[str]) -> Dict[str, object]:
        if keys is None:
            raise TypeError("BotStorage.read(): keys are required")
        out: Dict[str, object] = {}
        for key, (etag, doc) in (await self.kv.read(keys)).items():
            try:
                item = state_codec.loads(doc)
            except state_codec.UnreadableState as exc:
                log.error("refused the stored state %r: %s; it is treated as missing (it was not run)", key, exc)
                continue
            if isinstance(item, dict):
                item["e_tag"] = etag
            elif isinstance(item, StoreItem) or hasattr(item, "e_tag"):
                item.e_tag = etag
            out[key] = item
        return out

    async def write(self, changes: Dict[str, object]) -> None:
        if changes is None:
            raise TypeError("BotStorage.write(): changes are required")
        if changes:
            await self.kv.write({key: (_etag_of(item), _encode(item)) for key, item in changes.items()})

    async def delete(self, keys: List[str]) -> None:
        if keys is None:
            raise TypeError("BotStorage.delete(): keys are required")
        await self.kv.delete(keys)


def _encode(item: Any) -> str:
    if isinstance(item, dict):
        item = {k: v for k, v in item.items() if k != "e_tag"}
    elif hasattr(item, "e_tag"):
        clone = copy.copy(item)
        try:
            clone.e_tag = None
        except AttributeError:
            pass
        item = clone
    return state_codec.dumps(item)
