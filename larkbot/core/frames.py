"""The seam between event sources and admission.

An event source (the long connection, the webhook receiver) hands admission one complete,
verified payload at a time as an :class:`InboundFrame` and sends back the :class:`Ack`
admission returns: ``code == 200`` means the event is taken care of (stored, or dropped on
purpose); any other code asks Lark to deliver it again later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "ACK_FAILED",
    "ACK_OK",
    "ACK_OVERLOADED",
    "Ack",
    "FrameHandler",
    "InboundFrame",
    "InlineFrameHandler",
    "Respond",
]

ACK_OK = 200
ACK_OVERLOADED = 503
"""Ack code when the daemon cannot take the event now: the platform retries it later."""
ACK_FAILED = 500
"""Ack code when handling the event failed (a bug, a store error): the platform retries it."""


@dataclass(frozen=True, slots=True)
class InboundFrame:
    """One complete event or callback payload (fragments joined, signature verified)."""

    frame_id: str
    frame_type: str
    trace_id: str
    payload: bytes
    received_at: float
    conn_id: str


@dataclass(frozen=True, slots=True)
class Ack:
    """Admission's answer to a frame; ``data`` is a JSON body for callbacks that expect one."""

    code: int = ACK_OK
    data: bytes | None = None

    @property
    def ok(self) -> bool:
        """Whether the platform may consider the event delivered."""
        return self.code == ACK_OK


FrameHandler = Callable[[InboundFrame], Awaitable[Ack]]
"""Admission as event sources see it: a frame in, the ack to send back out."""


Respond = Callable[[Ack], None]
"""Sends one frame's ack; called once, on the event loop, possibly from a loop callback."""


@runtime_checkable
class InlineFrameHandler(Protocol):
    """A frame handler that can also take a frame without a task of its own."""

    async def __call__(self, frame: InboundFrame) -> Ack:
        """Handle ``frame`` and return its ack (the :data:`FrameHandler` way)."""
        ...

    def offer(self, frame: InboundFrame, respond: Respond) -> Awaitable[Ack] | None:
        """Take ``frame`` at once: ``None`` when ``respond`` will be (or was) called.

        Otherwise the frame needs to wait for something (a card action's handler, a shared
        queue): the returned awaitable does that work and gives the ack, and ``respond`` is
        not called. Raising means nothing was taken either.
        """
        ...
