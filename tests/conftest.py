"""Shared fixtures: the anyio backend and the blocking-call guard."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from blockbuster import BlockBuster, blockbuster_ctx


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio, the backend the daemon uses."""
    return "asyncio"


@pytest.fixture(autouse=True)
def blockbuster() -> Iterator[BlockBuster]:
    """Fail any test in which larkbot's own code blocks the event loop."""
    with blockbuster_ctx("larkbot") as guard:
        yield guard
