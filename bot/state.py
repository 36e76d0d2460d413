"""Conversation and user state whose change check uses bot/state_codec.py instead of jsonpickle.

botbuilder's `BotState.load` wraps what it read in a `CachedBotState`, which fingerprints the state with jsonpickle
when loaded, when saved and after writing. These subclasses only swap in a cached state that fingerprints with
the codec the storage already uses; loading, saving and etag semantics are botbuilder's.
"""

from __future__ import annotations

from typing import Any

from botbuilder.core import ConversationState, TurnContext, UserState
from botbuilder.core.bot_state import CachedBotState

from .state_codec import fingerprint


class _Cached(CachedBotState):  # type: ignore[misc]
    def compute_hash(self, obj: object) -> str:
        return fingerprint(obj)


class _FastLoad:
    _storage: Any
    _context_service_key: str

    async def load(self, turn_context: TurnContext, force: bool = False) -> None:
        cached = turn_context.turn_state.get(self._context_service_key)
        if force or not cached or not cached.state:
            key = self.get_storage_key(turn_context)  # type: ignore[attr-defined]
            items = await self._storage.read([key])
            turn_context.turn_state[self._context_service_key] = _Cached(items.get(key))


class SetupConversationState(_FastLoad, ConversationState):  # type: ignore[misc]
    pass


class SetupUserState(_FastLoad, UserState):  # type: ignore[misc]
    pass
