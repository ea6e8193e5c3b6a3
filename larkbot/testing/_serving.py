"""The start-up and shutdown the stand-ins share: one ASGI app served in its own task group."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import anyio
from anyio.abc import TaskGroup, TaskStatus
from starlette.types import ASGIApp

from larkbot.ops._uvicorn import EmbeddedServer, embedded_config

__all__ = ["ServedApp"]


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

    async def start(self, app: ASGIApp, host: str, port: int, *, websockets: bool = False) -> int:
        """Serve ``app`` on ``host:port``; return the port it listens on.

        :param websockets: serve WebSocket routes too (the long connection needs them).
        :raises OSError: the port could not be bound.
        """
        if self._exit_stack is not None:
            raise RuntimeError(f"{self._name} is already running")
        self._stopped = anyio.Event()
        stack = AsyncExitStack()
        task_group = await stack.enter_async_context(anyio.create_task_group())
        try:
            bound: int = await task_group.start(self._serve, app, host, port, websockets)
        except BaseException:
            # A server that fails to start leaves nothing running behind.
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
        websockets: bool,
        *,
        task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        assert self._stopped is not None
        config = embedded_config(app, host, port, websockets=websockets)
        self._server = EmbeddedServer(config, on_started=task_status.started)
        try:
            await self._server.serve()
        except SystemExit:
            # uvicorn exits the process when it cannot bind; a stand-in must only fail.
            raise OSError(f"{self._name} could not listen on {host}:{port}") from None
        finally:
            self._stopped.set()
