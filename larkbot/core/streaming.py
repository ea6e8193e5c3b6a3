"""The seam for answers that appear as they are written (streamed into a card).

The reply stage opens a :class:`ReplyStream` for a message it is answering and makes it
the :data:`current_reply_stream` while the agent runs; a brain that produces its answer
piece by piece (the LLM brain) feeds it. A brain that ignores it changes nothing: the
answer is then posted whole, as always.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Protocol

__all__ = ["ReplyStream", "current_reply_stream"]


class ReplyStream(Protocol):
    """Where a brain shows its answer while writing it."""

    async def text(self, so_far: str) -> None:
        """The answer's full text so far (each call supersedes the previous one)."""
        ...

    async def status(self, line: str) -> None:
        """A short line about what the brain is doing now (a tool call); ``""`` clears it."""
        ...


current_reply_stream: ContextVar[ReplyStream | None] = ContextVar(
    "current_reply_stream", default=None
)
"""The stream of the message being answered in this task, if the reply stage opened one."""
