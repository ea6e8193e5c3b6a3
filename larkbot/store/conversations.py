"""The in-process conversation cache: least recently used out, idle ones expire."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from cachetools import TTLCache

from larkbot.core.conversation import Conversation
from larkbot.ops.metrics import CONVERSATIONS_CACHED

if TYPE_CHECKING:
    from larkbot.config.settings import Settings

__all__ = ["ConversationCache"]


class ConversationCache:
    """Conversations by key, at most ``max_size`` of them, each dropped after ``idle_seconds``.

    Built on :class:`cachetools.TTLCache`, which evicts the least recently used entry when
    full and expires entries by time. A TTL cache counts time from the last *write*, so
    :meth:`get` writes a hit back to restart its idle timer. Not thread-safe: it lives on
    the event loop, where dispatch already serialises the turns of one conversation.
    """

    def __init__(
        self,
        max_size: int = 1000,
        max_turns: int = 50,
        idle_seconds: float = 3600,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_size < 1 or max_turns < 1 or idle_seconds <= 0:
            raise ValueError("max_size, max_turns and idle_seconds must be positive")
        self._entries: TTLCache[str, Conversation] = TTLCache(
            maxsize=max_size, ttl=idle_seconds, timer=clock
        )
        self.max_turns = max_turns

    @classmethod
    def from_settings(cls, settings: Settings) -> ConversationCache:
        """Size the cache from ``[cache]`` and ``agent.max_conversation_history``."""
        return cls(
            max_size=settings.cache.max_size,
            max_turns=settings.agent.max_conversation_history,
            idle_seconds=settings.cache.idle_minutes * 60,
        )

    def get(self, key: str) -> Conversation:
        """Return the conversation for ``key``, creating it when absent or expired.

        Turns beyond ``max_turns`` (possible after the limit was lowered) are dropped.
        """
        conversation = self._entries.get(key)
        if conversation is None:
            conversation = Conversation(key=key)
        elif len(conversation.turns) > self.max_turns:
            del conversation.turns[: len(conversation.turns) - self.max_turns]
        self._entries[key] = conversation
        self._publish()
        return conversation

    def reset(self, key: str) -> None:
        """Forget the conversation for ``key`` (its turns, language and profile)."""
        self._entries.pop(key, None)
        self._publish()

    def __len__(self) -> int:
        self._entries.expire()
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def _publish(self) -> None:
        CONVERSATIONS_CACHED.set(len(self))
