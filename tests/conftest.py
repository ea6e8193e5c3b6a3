"""Shared fixtures: the anyio backend, the blocking-call guard and the sample workspace."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from blockbuster import BlockBuster, blockbuster_ctx

from larkbot.core.retry import RetryPolicy
from larkbot.lark.client import LarkClient
from larkbot.testing import LarkStandIn
from larkbot.testing.sample_data import sample_workspace
from larkbot.testing.workspace import workspace_routes
from tests._factories import Sample


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio, the backend the daemon uses."""
    return "asyncio"


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Fail any test in which larkbot's own code blocks the event loop."""
    with blockbuster_ctx("larkbot") as guard:
        yield guard


@pytest.fixture
def lark_retry() -> RetryPolicy | None:
    """The retry policy of the ``sample`` client; ``None`` keeps the client's default.

    A module whose tests provoke failures overrides it with a faster policy.
    """
    return None


@pytest.fixture
async def sample(lark_retry: RetryPolicy | None) -> AsyncIterator[Sample]:
    """A fresh sample workspace served by the local Lark, and a client of it."""
    ws = sample_workspace()
    async with (
        LarkStandIn(extra_routes=workspace_routes(ws)) as lark,
        LarkClient(lark.url, lark.app_id, lark.app_secret, retry=lark_retry) as client,
    ):
        yield Sample(ws, lark, client)
