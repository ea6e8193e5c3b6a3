"""Shared fixtures: the anyio backend, the blocking-call guard, the log capture, the workspace.

``ws``, ``lark`` and ``sample`` build on each other: a module that defines its own ``lark``
gets it in ``sample`` too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from larkbot.core.retry import RetryPolicy
from larkbot.lark.client import LarkClient
from larkbot.ops.logging import ContextFilter
from larkbot.testing import LarkStandIn
from larkbot.testing.sample_data import sample_workspace
from larkbot.testing.workspace import Workspace, workspace_routes
from tests import _redis
from tests._factories import Sample
from tests._redis import RedisServer


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio, the backend the daemon uses."""
    return "asyncio"


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Fail any test in which larkbot's own code blocks the event loop."""
    with blockbuster_ctx("larkbot") as guard:
        yield guard


@pytest.hookimpl(wrapper=True, trylast=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Give ``caplog``'s records the ``log_context`` ids, as the daemon's own handlers do.

    Innermost (``trylast``), so the capture handler of the test's call phase exists already.
    """
    caplog = getattr(item, "funcargs", {}).get("caplog")
    if isinstance(caplog, pytest.LogCaptureFixture):
        caplog.handler.addFilter(ContextFilter())
    return (yield)


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    """A redis-server of the test's own; the test is skipped where none is installed."""
    if _redis.REDIS_SERVER is None:
        pytest.skip("redis-server is not installed: the Redis tests run against a real one")
    async with _redis.redis_server(tmp_path / "redis") as running:
        yield running


@pytest.fixture
def ws() -> Workspace:
    """The sample workspace: Bases, docs, wiki, calendar and people of a small company."""
    return sample_workspace()


@pytest.fixture
async def lark(ws: Workspace) -> AsyncIterator[LarkStandIn]:
    """The Lark stand-in serving ``ws`` (tests may define their own ``lark`` instead)."""
    async with LarkStandIn(extra_routes=workspace_routes(ws)) as stand_in:
        yield stand_in


@pytest.fixture
def lark_retry() -> RetryPolicy | None:
    """The retry policy of the ``sample`` client; ``None`` keeps the client's default.

    A module whose tests provoke failures overrides it with a faster policy.
    """
    return None


@pytest.fixture
async def sample(
    ws: Workspace, lark: LarkStandIn, lark_retry: RetryPolicy | None
) -> AsyncIterator[Sample]:
    """``ws`` served by ``lark``, and a Lark client of it."""
    async with LarkClient(lark.url, lark.app_id, lark.app_secret, retry=lark_retry) as client:
        yield Sample(ws, lark, client)
