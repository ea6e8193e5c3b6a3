"""The start-up the stand-ins share: serve in a task group of their own, learn the port."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack

import anyio
from anyio.abc import TaskGroup

__all__ = ["start_serving"]

Serve = Callable[..., Awaitable[None]]
"""A server's ``serve(*, task_status)``: reports its port once it listens."""


async def start_serving(serve: Serve) -> tuple[int, TaskGroup, AsyncExitStack]:
    """Start ``serve`` in a new task group; return its port, the group and the stack holding it.

    A server that fails to start leaves nothing running behind: its error is raised as it was.
    """
    stack = AsyncExitStack()
    task_group = await stack.enter_async_context(anyio.create_task_group())
    try:
        port: int = await task_group.start(serve)
    except BaseException:
        task_group.cancel_scope.cancel()
        await stack.aclose()
        raise
    return port, task_group, stack
