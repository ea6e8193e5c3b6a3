"""Per-user limits counted in Redis, so that N replicas enforce one limit together."""

from __future__ import annotations

import logging
from typing import Literal

from larkbot.store.redis._errors import RedisUnavailable
from larkbot.store.redis._store import RedisStore

__all__ = ["SharedRateLimiter"]

logger = logging.getLogger("larkbot.store")


class SharedRateLimiter:
    """At most ``per_minute`` calls of ``kind`` per user in any 60 s, counted cluster-wide.

    The agent's limiter protocol (``per_minute``, ``acquire``) over
    :meth:`RedisStore.rate_limit`. When Redis cannot be asked, the call is allowed: a
    limit is a courtesy to Lark and the LLM, and refusing every user during an outage
    would be worse than letting a few more calls through.

    :param kind: ``msg`` (messages, ``rate_limiting.requests_per_minute``) or ``write``
        (tool calls that change data, ``rate_limiting.write_requests_per_minute``).
    """

    def __init__(self, store: RedisStore, kind: Literal["msg", "write"], per_minute: int) -> None:
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        self._store = store
        self._kind: Literal["msg", "write"] = kind
        self._per_minute = per_minute

    @property
    def per_minute(self) -> int:
        """The number of calls allowed per user and minute."""
        return self._per_minute

    async def acquire(self, key: str) -> float | None:
        """Count a call for ``key``; ``None`` when allowed, else seconds until one would be."""
        try:
            decision = await self._store.rate_limit(key, self._kind, self._per_minute)
        except RedisUnavailable as exc:
            logger.warning("a %s limit could not be checked, so it allows: %s", self._kind, exc)
            return None
        return None if decision.allowed else max(decision.retry_after, 0.001)
