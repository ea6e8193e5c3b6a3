"""The parts a replica runs when replicas share a Redis store (``store.backend = redis``).

Beside the single-replica path (inbox store, resume, pruner), not instead of it: the
assembly builds :class:`SharedParts` only for the Redis backend, and the lifecycle runs
them through :func:`start_shared` and :class:`RedisGuard`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup

from larkbot.admission.admission import Enqueued
from larkbot.config import Settings
from larkbot.core.message import InboundMessage
from larkbot.core.retry import RetryPolicy
from larkbot.dispatch.dispatcher import Dispatcher
from larkbot.ops import metrics
from larkbot.ops.http import HealthState
from larkbot.reply.shared import OwnedWork, SharedResponder
from larkbot.sources import EventSource
from larkbot.store import StoreError
from larkbot.store.redis import PartitionOwnership, RedisStore, RedisUnavailable

__all__ = [
    "RedisGuard",
    "RedisQueue",
    "SharedParts",
    "drain_shared",
    "open_redis",
    "ownership_for",
    "start_shared",
    "verify_layout",
]

log = logging.getLogger("larkbot.daemon")

# After this many seconds of Redis failures the event source closes, so Lark sends the
# events to replicas that can store them (the design's "about 5 s").
PAUSE_AFTER_SECONDS = 5.0
_GUARD_POLL = 0.25
_BACKLOG_POLL = 5.0
_LAYOUT_RETRY = RetryPolicy(
    max_attempts=1_000_000, base_delay=0.5, max_delay=5.0, deadline=1e9, jitter=0.1
)


@dataclass(slots=True)
class SharedParts:
    """What a replica of a Redis deployment runs beside dispatch."""

    store: RedisStore
    ownership: PartitionOwnership
    work: OwnedWork
    responder: SharedResponder


@dataclass(eq=False, slots=True)
class _Intake:
    """One chat's latest intake in flight; the next one of the chat waits for it."""

    done: anyio.Event
    stored: bool = False


class RedisQueue:
    """The Redis store as admission's shared queue: dedup and enqueue before the ack.

    The long connection admits each frame on its own task, in arrival order; intakes run
    on a pool of Redis connections, where a later one could overtake an earlier one. So
    the intakes of one chat run one after the other, in the order admission asked for
    them, and one whose predecessor was refused is refused too: Lark re-delivers both,
    rather than the later message being queued (and answered) first.
    """

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self._latest: dict[str, _Intake] = {}

    async def enqueue(self, message: InboundMessage) -> Enqueued:
        """Intake ``message`` (bounded by the store's intake timeout)."""
        chat_id = message.chat_id
        previous = self._latest.get(chat_id)
        mine = self._latest[chat_id] = _Intake(anyio.Event())
        try:
            if previous is not None:
                with anyio.move_on_after(self._store.intake_timeout):
                    await previous.done.wait()
                if not previous.stored:
                    self._refused(message, "an earlier message of its chat was not stored")
                    return Enqueued.UNAVAILABLE
            try:
                result = await self._store.intake(message)
            except RedisUnavailable as exc:
                self._refused(message, str(exc))
                return Enqueued.UNAVAILABLE
            mine.stored = True
            return Enqueued.NEW if result.new else Enqueued.DUPLICATE
        finally:
            mine.done.set()
            if self._latest.get(chat_id) is mine:
                del self._latest[chat_id]

    @staticmethod
    def _refused(message: InboundMessage, why: str) -> None:
        log.warning(
            "message %s not stored: %s",
            message.message_id,
            why,
        )


@asynccontextmanager
async def open_redis(settings: Settings) -> AsyncIterator[RedisStore]:
    """Open the Redis store the settings describe (nothing is sent to Redis yet)."""
    store_settings = settings.store
    if store_settings.redis_url is None:
        raise StoreError(
            "store.backend = redis needs a Redis URL: set REDIS_URL (redis://host:6379/0)"
        )
    password = store_settings.redis_password
    async with RedisStore.open(
        store_settings.redis_url.get_secret_value(),
        password=password.get_secret_value() if password is not None else None,
        prefix=store_settings.redis_prefix,
        partitions=store_settings.partitions,
        seen_ttl_seconds=store_settings.ledger_ttl_hours * 3600,
        conversation_ttl_seconds=settings.cache.idle_minutes * 60,
        max_turns=settings.agent.max_conversation_history,
    ) as store:
        yield store


def ownership_for(settings: Settings, store: RedisStore) -> PartitionOwnership:
    """This replica's partition ownership, with the configured lease."""
    return PartitionOwnership(store, lease_ttl=settings.store.lease_seconds)


async def verify_layout(store: RedisStore) -> None:
    """Check the partition count against Redis, waiting for Redis as long as it takes.

    :raises RedisConfigError: another deployment under this prefix uses another count.
    """
    failures = 0
    while True:
        try:
            await store.verify_layout()
        except RedisUnavailable as exc:
            failures += 1
            delay = _LAYOUT_RETRY.backoff(failures)
            log.warning("Redis is not reachable yet (%s); retrying in %.1f s", exc, delay)
            await anyio.sleep(delay)
        else:
            return


async def start_shared(
    tg: TaskGroup, shared: SharedParts, dispatcher: Dispatcher, guard: RedisGuard
) -> None:
    """Start ownership (leases, the feed of owned messages), the feed into dispatch, the
    guard and the backlog gauges, in ``tg``."""
    metrics.precreate_partitions(shared.store.keys.partitions)
    await tg.start(shared.ownership.run)
    tg.start_soon(shared.work.feed, dispatcher)
    tg.start_soon(guard.run)
    tg.start_soon(_watch_backlog, shared.store)


async def drain_shared(shared: SharedParts, dispatcher: Dispatcher, grace: float) -> None:
    """Graceful stop of a replica: finish what is in flight, hand the partitions over.

    Messages queued here but not started are left pending (the next owners answer them
    in order); answers in flight get ``grace`` seconds; then every lease is released at
    once, so other replicas adopt the partitions within a tick instead of a lease.
    """
    shared.responder.draining = True
    if not await dispatcher.drain(grace):
        log.warning(
            "grace period of %.0f s over: %d message(s) left to the partitions' next owners",
            grace,
            dispatcher.backlog,
        )
    await shared.ownership.release_all(drain_seconds=0.0)


class RedisGuard:
    """Watches Redis for one replica: ``/readyz``, the up gauge, and the event source.

    While Redis fails, admission already refuses every ack (nothing can be stored); after
    :data:`PAUSE_AFTER_SECONDS` of failures the guard also closes the event source, so
    Lark delivers to replicas that can take the events, and opens it again once Redis
    answers. Failures are those of any call (intake, heartbeats, pings); while they last
    the guard pings Redis itself, so recovery is seen at once.
    """

    def __init__(
        self,
        store: RedisStore,
        health: HealthState,
        *,
        pause_after: float = PAUSE_AFTER_SECONDS,
        poll: float = _GUARD_POLL,
    ) -> None:
        self._store = store
        self._health = health
        self._pause_after = pause_after
        self._poll = poll
        self._source_scope: anyio.CancelScope | None = None
        self._paused = False
        self._resumed = anyio.Event()
        self._stopping = False
        health.store_reachable = True
        metrics.REDIS_UP.set(1)

    @property
    def paused(self) -> bool:
        """Whether the event source is closed because Redis fails."""
        return self._paused

    async def run(self) -> None:
        """Watch until cancelled."""
        while True:
            outage = self._store.outage_seconds
            if outage > 0:
                try:
                    await self._store.ping(bound=1.0)
                except RedisUnavailable:
                    outage = self._store.outage_seconds
                else:
                    outage = 0.0
            self._note(outage)
            await anyio.sleep(self._poll)

    def _note(self, outage: float) -> None:
        up = outage == 0
        if self._health.store_reachable != up:
            if up:
                log.info("Redis answers again")
            else:
                log.warning("Redis is not answering: refusing events until it does")
        self._health.store_reachable = up
        metrics.REDIS_UP.set(1 if up else 0)
        if not up and outage >= self._pause_after and not self._paused and not self._stopping:
            self._paused = True
            self._resumed = anyio.Event()
            log.warning(
                "Redis has failed for %.0f s: closing the event source so Lark sends events "
                "to other replicas",
                outage,
            )
            if self._source_scope is not None:
                self._source_scope.cancel()
        elif up and self._paused:
            self._paused = False
            log.info("reopening the event source")
            self._resumed.set()

    async def run_source(self, source: EventSource) -> None:
        """Run ``source``, closing it while Redis fails; return once it is closed for good.

        :raises LarkbotError: what the source raises (refused credentials, ...).
        """
        while not self._stopping:
            if self._paused:
                await self._resumed.wait()
                continue
            with anyio.CancelScope() as scope:
                self._source_scope = scope
                try:
                    await source.run()
                finally:
                    self._source_scope = None
                return  # closed by a shutdown
            # Cancelled by the guard: Redis fails. Wait until it answers again.

    def stop(self) -> None:
        """Shutdown: never reopen the source from now on."""
        self._stopping = True
        self._resumed.set()


async def _watch_backlog(store: RedisStore) -> None:
    """Export each partition's backlog and oldest unanswered age every few seconds."""
    while True:
        try:
            backlog = await store.backlog()
        except RedisUnavailable:
            pass  # the up gauge says why the figures stand still
        else:
            for partition in backlog:
                label = str(partition.partition)
                metrics.REDIS_BACKLOG.labels(partition=label).set(partition.length)
                metrics.REDIS_OLDEST_PENDING_AGE.labels(partition=label).set(
                    partition.oldest_age_seconds or 0.0
                )
        await anyio.sleep(_BACKLOG_POLL)
