"""The seam between event sources and admission.

An event source (the long connection, the webhook receiver) hands admission one complete,
verified payload at a time as an :class:`InboundFrame` and sends back the :class:`Ack`
admission returns: ``code == 200`` means the event is taken care of (stored, or dropped on
purpose); any other code asks Lark to deliver it again later.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["ACK_OK", "ACK_OVERLOADED", "Ack", "FrameHandler", "InboundFrame"]

ACK_OK = 200
ACK_OVERLOADED = 503
"""Ack code when the daemon cannot take the event now: the platform retries it later."""


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
