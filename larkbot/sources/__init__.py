"""Event sources: where verified events come from before admission.

``longconn`` dials Lark's long connection (a WebSocket). Every source hands admission one
:class:`~larkbot.core.frames.InboundFrame` at a time and sends back the
:class:`~larkbot.core.frames.Ack` admission returns; the daemon builds its source through
a :data:`SourceFactory`, so another source (a webhook receiver) plugs in beside it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from starlette.routing import BaseRoute

from larkbot.core.frames import FrameHandler

__all__ = ["EventSource", "SourceFactory", "StateCallback"]

StateCallback = Callable[[bool], None]
"""Called with ``True`` when the source can receive events and ``False`` when it cannot."""


class EventSource(Protocol):
    """Receives events from Lark and hands them to admission until closed."""

    @property
    def routes(self) -> Sequence[BaseRoute]:
        """HTTP routes the source serves on the daemon's HTTP port (none for a socket)."""
        ...

    async def run(self) -> None:
        """Receive until :meth:`close` or cancellation.

        Raises a :class:`~larkbot.core.errors.LarkbotError` when the source cannot go on
        (refused credentials, reconnects used up).
        """
        ...

    def close(self) -> None:
        """Stop receiving, so Lark routes new events to other replicas; :meth:`run` returns."""
        ...


SourceFactory = Callable[[FrameHandler, StateCallback], EventSource]
"""Builds a source from admission (the frame handler) and a readiness callback."""
