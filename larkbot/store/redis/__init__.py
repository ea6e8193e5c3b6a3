"""The Redis store: shared state for N replicas (dedup, ordered queues, leases, history).

Two objects make it up::

    async with RedisStore.open(redis_url, password=secret) as store:
        result = await store.intake(message)          # before the ack
        ownership = PartitionOwnership(store)
        async with anyio.create_task_group() as tg:
            await tg.start(ownership.run)
            async for item in ownership.items:         # this replica's share, in order
                ...
                await ownership.finish(item, FinishChange(user_text=..., answer_text=...))

:class:`RedisStore` holds the atomic steps (intake, the answer cache, conversations, the
fenced finish, rate limits) and the operations (ping, info, backlog, inspect, backup,
restore). :class:`PartitionOwnership` decides which replica answers which partition and
feeds it the admitted messages. Every Redis failure raises :class:`RedisUnavailable`.
The key layout is in :mod:`larkbot.store.redis._keys`, the scripts in ``_scripts``.
"""

from __future__ import annotations

from larkbot.store.redis import _models
from larkbot.store.redis._endpoint import RedisEndpoint
from larkbot.store.redis._errors import RedisConfigError, RedisUnavailable
from larkbot.store.redis._keys import Keyspace
from larkbot.store.redis._limits import SharedRateLimiter
from larkbot.store.redis._models import *  # noqa: F403  (every result type is public)
from larkbot.store.redis._ownership import PartitionOwnership, rendezvous_owner
from larkbot.store.redis._store import RedisStore

__all__ = [
    "Keyspace",
    "PartitionOwnership",
    "RedisConfigError",
    "RedisEndpoint",
    "RedisStore",
    "RedisUnavailable",
    "SharedRateLimiter",
    "rendezvous_owner",
    *_models.__all__,
]
