"""The webhook as an event source: its route lives on the daemon's HTTP port."""

from __future__ import annotations

import logging

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from larkbot.config.settings import EventsSettings
from larkbot.core.frames import Ack, FrameHandler, InboundFrame
from larkbot.ops.metrics import CONNECTION_UP
from larkbot.sources.webhook._endpoint import WebhookEndpoint

__all__ = ["WebhookSource"]

_log = logging.getLogger("larkbot.webhook")


class WebhookSource:
    """Serves ``POST <webhook_path>`` while running; answers 503 before and after.

    Lark retries a 503 (15 s, 5 min, 1 h, 6 h), so an event that reaches a replica that is
    starting or draining is not lost: it comes back, to this replica or another.
    """

    def __init__(
        self,
        settings: EventsSettings,
        handler: FrameHandler,
        on_state: object = None,
    ) -> None:
        self._handler = handler
        self._on_state = on_state if callable(on_state) else (lambda _up: None)
        self._endpoint = WebhookEndpoint(settings, self._admit)
        self._open = False
        self._closed = anyio.Event()

    @property
    def routes(self) -> list[BaseRoute]:
        """``POST <webhook_path>`` on the HTTP port."""
        return [Route(self._endpoint.path, self._handle, methods=["POST"], name="webhook")]

    async def run(self) -> None:
        """Take events until :meth:`close`."""
        self._open = True
        # The gauge the "disconnected" alert watches means "events can reach us" in
        # either mode.
        CONNECTION_UP.set(1)
        self._on_state(True)
        _log.info("receiving events on POST %s", self._endpoint.path)
        try:
            await self._closed.wait()
        finally:
            self._open = False
            CONNECTION_UP.set(0)
            self._on_state(False)

    def close(self) -> None:
        """Stop taking events: new requests get 503, so Lark re-delivers them later."""
        self._open = False
        self._closed.set()

    async def _handle(self, request: Request) -> Response:
        if not self._open:
            return JSONResponse({"msg": "not accepting events now"}, status_code=503)
        return await self._endpoint.handle(request)

    async def _admit(self, frame: InboundFrame) -> Ack:
        return await self._handler(frame)
