"""What an event source hands to admission, and what admission answers.

These types are shared by every event source; they live here until they move to the core
package.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ["Ack", "FrameHandler", "InboundFrame"]


@dataclass(frozen=True, slots=True)
class InboundFrame:
    """One complete event or callback payload handed by an event source to admission."""

    frame_id: str  # webhook: a fresh id per request (e.g. uuid4 hex)
    kind: str  # "event" (events and card callbacks both arrive as events)
    payload: bytes  # the verified, decrypted event JSON
    received_at: float  # time.monotonic()
    source: str  # "webhook"
    trace_id: str = ""


@dataclass(frozen=True, slots=True)
class Ack:
    """Admission's answer to one frame."""

    code: int  # 200 = taken (durable or deliberately dropped); anything else = ask Lark to retry
    data: bytes | None = None  # a JSON body to answer with (card callbacks: toast/card), else None


FrameHandler = Callable[[InboundFrame], Awaitable[Ack]]
