"""Opening the Redis store from the settings, for the commands that inspect or move state."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from larkbot.config import Settings
from larkbot.store.redis import RedisConfigError, RedisStore

__all__ = ["redis_store"]


@asynccontextmanager
async def redis_store(
    settings: Settings, *, command_timeout: float = 5.0
) -> AsyncIterator[RedisStore]:
    """The Redis store the daemon would use, with the same key prefix, partitions and TTLs.

    Raises :class:`RedisConfigError` when no Redis URL is set or it does not parse.
    """
    store = settings.store
    if store.redis_url is None:
        raise RedisConfigError(
            "store = redis needs a Redis URL: set REDIS_URL (or store.redis_url), "
            "e.g. redis://redis:6379/0"
        )
    password = store.redis_password.get_secret_value() if store.redis_password else None
    async with RedisStore.open(
        store.redis_url.get_secret_value(),
        password=password,
        prefix=store.redis_prefix,
        partitions=store.partitions,
        command_timeout=command_timeout,
        seen_ttl_seconds=store.ledger_ttl_hours * 3600,
        conversation_ttl_seconds=settings.cache.idle_minutes * 60,
        max_turns=settings.agent.max_conversation_history,
        max_connections=4,
    ) as opened:
        yield opened
