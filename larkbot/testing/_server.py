"""uvicorn, embedded: serves an ASGI app inside the caller's event loop.

The protocol and lifespan modules uvicorn names in its config are imported here, at
import time: uvicorn would otherwise import them on first start, inside the running
event loop, and an import reads files.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Generator
from contextlib import AsyncExitStack
from typing import Any

import anyio
import uvicorn
import uvicorn.lifespan.off
import uvicorn.protocols.http.h11_impl
import uvicorn.protocols.websockets.websockets_sansio_impl
from anyio.abc import TaskGroup, TaskStatus
from starlette.types import ASGIApp

__all__ = ["EmbeddedServer", "ServedApp", "server_config"]


def server_config(app: ASGIApp, host: str, port: int) -> uvicorn.Config:
    """Return a config fit for a stand-in living inside another program.

    No logging setup (``log_config=None``) so the host program's logging stays as it is,
    no access log and no lifespan, keepalive pings off (the long connection has its own
    ping frames, and tests of silent sockets must control them), no compression (cheap
    frames at benchmark rates), and a short graceful shutdown.
    """
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        http="h11",
        ws="websockets-sansio",
        proxy_headers=False,
        ws_ping_interval=None,
        ws_ping_timeout=None,
        ws_per_message_deflate=False,
        lifespan="off",
        log_config=None,
        log_level="warning",
        access_log=False,
        server_header=False,
        date_header=False,
        timeout_graceful_shutdown=1,
    )


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signals alone and reports when it listens."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[int], None]) -> None:
        super().__init__(config)
        self._on_started = on_started
        self._exit_requested: anyio.Event | None = None

    def request_exit(self) -> None:
        """Ask the server to stop: close the listener, then the connections."""
        self.should_exit = True
        if self._exit_requested is not None:
            self._exit_requested.set()

    async def main_loop(self) -> None:
        """Wait for ``request_exit`` instead of uvicorn's 100 ms polling, to stop sooner.

        uvicorn's ticks only refresh the Date header, which this config turns off.
        """
        self._exit_requested = anyio.Event()
        if not self.should_exit:
            await self._exit_requested.wait()

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        """Install no signal handlers: the host program owns SIGINT and SIGTERM."""
        yield

    async def startup(self, sockets: Any = None) -> None:
        """Start listening, then report the real port (``port=0`` picks a free one)."""
        await super().startup(sockets=sockets)
        if self.started:
            self._on_started(self.bound_port)

    @property
    def bound_port(self) -> int:
        """The port the first listening socket is bound to."""
        server: asyncio.base_events.Server = self.servers[0]
        return int(server.sockets[0].getsockname()[1])

    def websocket_transports(self) -> list[tuple[dict[str, Any], asyncio.BaseTransport]]:
        """Return ``(scope, transport)`` of every open WebSocket connection.

        uvicorn does not hand the transport to the application; the stand-in needs it
        to drop a connection abruptly (no close frame), as a network failure does.
        """
        found: list[tuple[dict[str, Any], asyncio.BaseTransport]] = []
        for protocol in list(self.server_state.connections):
            scope = getattr(protocol, "scope", None)
            transport = getattr(protocol, "transport", None)
            if isinstance(scope, dict) and scope.get("type") == "websocket" and transport:
                found.append((scope, transport))
        return found


class ServedApp:
    """One ASGI app served by an ``EmbeddedServer`` in a task group of its own.

    The start-up and shutdown every stand-in needs, in one place: ``start`` returns once
    the app listens (with the real port when ``port=0``), ``stop`` asks the server to exit,
    forces it after ``grace`` seconds, and releases the port even when the caller is
    cancelled. ``name`` says what failed in errors (``"the Lark stand-in"``).
    """

    def __init__(self, name: str) -> None:
        self._name = name
        self._server: EmbeddedServer | None = None
        self._stopped: anyio.Event | None = None
        self._task_group: TaskGroup | None = None
        self._exit_stack: AsyncExitStack | None = None

    @property
    def running(self) -> bool:
        """Whether ``start`` has returned and ``stop`` has not been called since."""
        return self._exit_stack is not None

    @property
    def server(self) -> EmbeddedServer | None:
        """The uvicorn server, once ``start`` has created it."""
        return self._server

    @property
    def task_group(self) -> TaskGroup | None:
        """The task group the server runs in, for the app's own background tasks."""
        return self._task_group

    async def start(self, app: ASGIApp, host: str, port: int) -> int:
        """Serve ``app`` on ``host:port``; return the port it listens on.

        :raises OSError: the port could not be bound.
        """
        if self._exit_stack is not None:
            raise RuntimeError(f"{self._name} is already running")
        self._stopped = anyio.Event()
        stack = AsyncExitStack()
        task_group = await stack.enter_async_context(anyio.create_task_group())
        try:
            bound: int = await task_group.start(self._serve, app, host, port)
        except BaseException:
            task_group.cancel_scope.cancel()
            await stack.aclose()
            raise
        self._task_group, self._exit_stack = task_group, stack
        return bound

    async def stop(
        self,
        *,
        grace: float,
        before_exit: Callable[[EmbeddedServer], Awaitable[None]] | None = None,
    ) -> None:
        """Stop serving: ``before_exit`` (if any), then exit, forced after ``grace`` seconds.

        :param before_exit: runs first, shielded like the rest (a stand-in closes its own
            connections there).
        """
        stack, task_group, server, stopped = (
            self._exit_stack,
            self._task_group,
            self._server,
            self._stopped,
        )
        if stack is None or task_group is None or server is None or stopped is None:
            raise RuntimeError(f"{self._name} is not running")
        # Shielded: the server must release its port even when the caller is cancelled.
        with anyio.CancelScope(shield=True):
            if before_exit is not None:
                await before_exit(server)
            server.request_exit()
            with anyio.move_on_after(grace):
                await stopped.wait()
            if not stopped.is_set():
                server.force_exit = True
                with anyio.move_on_after(1.0):
                    await stopped.wait()
            task_group.cancel_scope.cancel()
        self._exit_stack = self._task_group = None
        # The caller's own exception stays out of the internal task group, which would
        # otherwise wrap it in an exception group; it propagates as it was.
        await stack.aclose()

    async def _serve(
        self,
        app: ASGIApp,
        host: str,
        port: int,
        *,
        task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        assert self._stopped is not None
        self._server = EmbeddedServer(
            server_config(app, host, port), on_started=task_status.started
        )
        try:
            await self._server.serve()
        except SystemExit:
            # uvicorn exits the process when it cannot bind; a stand-in must only fail.
            raise OSError(f"{self._name} could not listen on {host}:{port}") from None
        finally:
            self._stopped.set()
