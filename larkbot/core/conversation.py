"""A conversation: the turns an agent remembers for one chat (or one group thread)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from larkbot.core.language import Language

__all__ = ["Conversation", "Turn"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One exchange entry in a conversation."""

    role: Literal["user", "assistant"]
    text: str
    at: datetime = field(default_factory=lambda: datetime.now(UTC))


@dataclass(slots=True)
class Conversation:
    """The state an agent keeps for one chat (or one group thread)."""

    key: str
    turns: list[Turn] = field(default_factory=list)
    language: Language | None = None
    profile: str | None = None

    def add(self, role: Literal["user", "assistant"], text: str, limit: int) -> None:
        """Append a turn, keeping only the last ``limit`` turns."""
        self.turns.append(Turn(role, text))
        if len(self.turns) > limit:
            del self.turns[: len(self.turns) - limit]
