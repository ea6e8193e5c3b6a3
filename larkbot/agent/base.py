"""The agent interface: a message and its conversation in, a reply out.

Brains (the offline command/intent brain, the LLM brain) implement :class:`Agent`.
The daemon only ever calls :meth:`Agent.respond`; it never looks inside a brain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, Protocol, runtime_checkable

from larkbot.admission.events import InboundMessage

__all__ = ["Agent", "Conversation", "Reply", "RuntimeStatus", "Turn"]

Language = Literal["ja", "en", "zh"]


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


@dataclass(frozen=True, slots=True)
class Reply:
    """What the agent answers. ``markdown`` replies are rendered as rich messages."""

    text: str
    markdown: bool = False


class RuntimeStatus(Protocol):
    """Live figures of the daemon, for the ``status`` command."""

    @property
    def version(self) -> str: ...
    @property
    def uptime_seconds(self) -> float: ...
    @property
    def connected(self) -> bool: ...
    @property
    def events_handled(self) -> int: ...


@runtime_checkable
class Agent(Protocol):
    """Turns a message plus its conversation into a reply."""

    async def respond(self, message: InboundMessage, conversation: Conversation) -> Reply:
        """Answer ``message``; may read and update ``conversation``."""
        ...
