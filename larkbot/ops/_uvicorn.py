"""uvicorn, embedded: serve an ASGI app inside the caller's anyio task group.

The one place larkbot configures and subclasses uvicorn: the ops port, the MCP and webhook
endpoints it carries, and the local stand-ins of Lark and of an LLM all serve through it.
The protocol and lifespan modules the config names are imported here, at import time:
uvicorn would otherwise import them on first start, inside the running event loop, and an
import reads files.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Generator
from typing import Any

import uvicorn
import uvicorn.lifespan.off
import uvicorn.lifespan.on
import uvicorn.protocols.http.h11_impl
import uvicorn.protocols.websockets.websockets_sansio_impl
from starlette.types import ASGIApp

try:
    # httptools (optional, in the ``bench`` extra) parses HTTP in C: the stand-in then
    # spends far less CPU per OpenAPI call, which matters when it shares the machine with
    # the bot it measures.
    import uvicorn.protocols.http.httptools_impl

    _HTTP = "httptools"
except ImportError:
    _HTTP = "h11"

__all__ = ["EmbeddedServer", "embedded_config"]


def embedded_config(
    app: ASGIApp, host: str, port: int, *, websockets: bool = False, lifespan: bool = False
) -> uvicorn.Config:
    """Return a config fit for a server living inside another program.

    No logging setup (``log_config=None``) so the host program's logging stays as it is,
    no access log, keepalive pings off (the long connection has its own ping frames, and
    tests of silent sockets must control them), no compression, a short graceful shutdown,
    and httptools when installed. ``lifespan`` runs the app's lifespan (an MCP session
    manager needs it).
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http=_HTTP,
        ws="websockets-sansio" if websockets else "none",
        proxy_headers=False,
        ws_ping_interval=None,
        ws_ping_timeout=None,
        ws_per_message_deflate=False,
        lifespan="on" if lifespan else "off",
        log_config=None,
        log_level="warning",
        access_log=False,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=1,
    )
    # Loading imports protocol modules; do it now rather than on the running loop.
    config.load()
    return config


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone and reports the port once it listens."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[int], None]) -> None:
        super().__init__(config)
        self._on_started = on_started
        self.shut_down = False

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Install no signal handlers: the host program owns SIGINT and SIGTERM."""
        yield

    async def startup(self, sockets: Any = None) -> None:
        """Start listening, then report the real port (``port=0`` picks a free one)."""
        await super().startup(sockets=sockets)
        if self.started:
            self._on_started(self.bound_port)

    async def shutdown(self, sockets: Any = None) -> None:
        """Close listeners and connections (once: callers check ``shut_down``)."""
        self.shut_down = True
        await super().shutdown(sockets=sockets)

    def request_exit(self) -> None:
        """Ask the server to stop: close the listener, then the connections."""
        self.should_exit = True

    @property
    def bound_port(self) -> int:
        """The port the first listening socket is bound to."""
        server: asyncio.base_events.Server = self.servers[0]
        return int(server.sockets[0].getsockname()[1])

    def websocket_transports(self) -> list[tuple[dict[str, Any], asyncio.BaseTransport]]:
        """Return ``(scope, transport)`` of every open WebSocket connection.

        uvicorn does not hand the transport to the application; the Lark stand-in needs it
        to drop a connection abruptly (no close frame), as a network failure does.
        """
        found: list[tuple[dict[str, Any], asyncio.BaseTransport]] = []
        for protocol in list(self.server_state.connections):
            scope = getattr(protocol, "scope", None)
            transport = getattr(protocol, "transport", None)
            if isinstance(scope, dict) and scope.get("type") == "websocket" and transport:
                found.append((scope, transport))
        return found
