"""The agent interface: a message and its conversation in, a reply out.

Brains (the offline command/intent brain, the LLM brain) sit behind :class:`Agent`.
The answering stage only ever calls :meth:`Agent.respond`; it never looks inside a brain.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from larkbot.core.conversation import Conversation
from larkbot.core.message import InboundMessage

__all__ = ["Agent", "Reply", "RuntimeStatus"]


@dataclass(frozen=True, slots=True)
class Reply:
    """What the agent answers. ``markdown`` replies are rendered as rich messages.

    A reply with a ``card`` (card JSON 2.0) is sent as that card; ``text`` then says the
    same in words, for the conversation's history.
    """

    text: str
    markdown: bool = False
    card: Mapping[str, Any] | None = None


class RuntimeStatus(Protocol):
    """Live figures of the running bot: everything the ``status`` command shows.

    ``version`` is larkbot's; ``uptime_seconds`` counts from start; ``connected`` says
    whether the event source is connected to Lark; ``events_handled`` counts the events
    admission has seen; ``conversations`` is how many conversations the store keeps.
    """

    @property
    def version(self) -> str: ...
    @property
    def uptime_seconds(self) -> float: ...
    @property
    def connected(self) -> bool: ...
    @property
    def events_handled(self) -> int: ...
    @property
    def conversations(self) -> int: ...


@runtime_checkable
class Agent(Protocol):
    """Turns a message plus its conversation into a reply."""

    async def respond(self, message: InboundMessage, conversation: Conversation) -> Reply:
        """Answer ``message``; may read and update ``conversation``."""
        ...
