"""Which replica answers which partition, and the feed of its messages in stream order.

Each replica runs one :class:`PartitionOwnership`. Every ``tick`` it heartbeats into the
member set (a ZSET scored by expiry on Redis' clock) and computes its share of the
partitions by rendezvous hashing over the live members: each partition goes to the member
with the highest ``blake2b(member, partition)``, so a member joining or leaving moves only
the partitions it wins or held, and every replica computes the same answer without
talking to the others.

It takes the lease of each partition it should own (a Lua script returns a new epoch: the
fencing token) and renews it every ``lease_ttl / 4``. A partition it should no longer own
is drained (no new reads, the items handed out are finished or ``drain_timeout`` passes)
and released, so the new owner starts where this one stopped. A lease it fails to renew
is dropped at once; the local deadline (renewal sent + TTL) also drops it when Redis is
unreachable, before Redis' own expiry can hand it to someone else.

On taking a partition it claims every pending entry of earlier owners (dead or paused),
then reads its stream with fenced scripts: its own pending entries after its cursor first
(so a read whose reply was lost, or the claimed backlog, comes out oldest first), then new
ones. Between reads it blocks on one ``XREAD`` over all its streams. Items go out in
stream order per partition on a bounded memory object stream; a full stream stops the
reading (backpressure) rather than buffering without bound.

Bounds (with the defaults: lease 10 s, tick 1 s): a replica killed with ``-9`` has its
partitions adopted once both its heartbeat and its leases have expired, within
``lease_ttl + tick`` (~11 s); :meth:`PartitionOwnership.release_all` hands every partition
over at once, adopted within about one tick.

Where this differs from a plain ``XREADGROUP BLOCK`` loop, and why: ``XREADGROUP`` runs
inside a fenced script (scripts cannot block), and the blocking wait is a read-only
``XREAD`` that delivers nothing. A blocking ``XREADGROUP`` issued just before a pause would
deliver entries to a stale owner after its lease passed on, stranding them in its pending
list behind entries the new owner already answered; a fenced read cannot. Each script
stays in one hash slot, but the one ``XREAD`` over all owned streams needs them on one
node: use a standalone Redis or Valkey (with a replica and Sentinel for failover), not
Redis Cluster.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream
from pydantic import ValidationError

from larkbot.core.message import InboundMessage
from larkbot.store.redis._errors import RedisConfigError, RedisUnavailable
from larkbot.store.redis._models import FinishChange, FinishOutcome, WorkItem
from larkbot.store.redis._store import _SETTLE_ONLY, RedisStore, _Entry

__all__ = ["PartitionOwnership", "rendezvous_owner"]

logger = logging.getLogger("larkbot.store")


@dataclass(eq=False)
class _Held:
    """A lease this replica holds, and how far it has read the partition."""

    epoch: int
    valid_until: float
    renew_at: float
    cursor: str = "0-0"
    claimed: bool = False
    ready: bool = True
    draining_since: float | None = None
    inflight: set[str] = field(default_factory=set)


def rendezvous_owner(members: Sequence[str], partition: int) -> str:
    """The member that should own ``partition``: the highest ``blake2b(member, partition)``."""
    return max(members, key=lambda member: _weight(member, partition))


def _weight(member: str, partition: int) -> int:
    digest = hashlib.blake2b(f"{member}\0{partition}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@lru_cache(maxsize=8)
def _share(members: tuple[str, ...], owner: str, partitions: int) -> frozenset[int]:
    return frozenset(p for p in range(partitions) if rendezvous_owner(members, p) == owner)


class PartitionOwnership:
    """This replica's share of the partitions, and the feed of their messages.

    Run :meth:`run` once, in a task group, and read :attr:`items`; settle every item with
    :meth:`finish` (or :meth:`settle` to give it up). Before starting on an item, skip (and
    settle) it when :meth:`is_current` is False: its partition changed hands while it
    waited, and the new owner answers it. Cancelling :meth:`run` leaves the leases to
    expire (what a crash does); :meth:`release_all` hands them over at once.

    :param store: the open Redis store.
    :param owner: this replica's id (default ``host:pid:random``); never reuse a live one.
    :param lease_ttl: seconds a lease lives without renewal; renewed every quarter of it.
    :param tick: seconds between heartbeats and ownership checks; ``None``: a quarter of
        ``lease_ttl``, at most 1 s.
    :param buffer: items handed out and not yet received, beyond which reading waits.
    :param batch: entries read per partition and call.
    :param block: seconds one XREAD waits for new entries.
    :param max_deliveries: deliveries after which an entry goes to the dead-letter stream.
    :param drain_timeout: seconds a partition being handed over waits for its items.
    """

    def __init__(
        self,
        store: RedisStore,
        *,
        owner: str | None = None,
        lease_ttl: float = 10.0,
        tick: float | None = None,
        buffer: int = 64,
        batch: int = 32,
        block: float = 0.5,
        max_deliveries: int = 5,
        drain_timeout: float = 10.0,
    ) -> None:
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        if "|" in self.owner or not self.owner:
            raise RedisConfigError(f"the owner id {self.owner!r} must be non-empty, without '|'")
        tick = min(1.0, lease_ttl / 4) if tick is None else tick
        if not 0 < tick < lease_ttl or block <= 0 or batch < 1 or max_deliveries < 1:
            raise RedisConfigError(
                "partition ownership needs 0 < tick < lease_ttl, a positive block, and batch "
                "and max_deliveries of at least 1"
            )
        self._store = store
        self._ttl = lease_ttl
        self._ttl_ms = int(lease_ttl * 1000)
        self._tick = tick
        self._batch = batch
        self._block_ms = max(1, int(block * 1000))
        self._max_deliveries = max_deliveries
        self._drain_timeout = drain_timeout
        self._send, self.items = anyio.create_memory_object_stream[WorkItem](buffer)
        self._held: dict[int, _Held] = {}
        self._members: tuple[str, ...] = ()
        self._wakeup = anyio.Event()
        self._settled = anyio.Event()
        self._wait_scope: anyio.CancelScope | None = None
        # Made here, entered by the loops: a release that comes before a loop has started
        # still stops it (entering a cancelled scope cancels at once).
        self._lease_scope = anyio.CancelScope()
        self._reader_scope = anyio.CancelScope()
        self._reader_stopped = anyio.Event()
        self._lease_stopped = anyio.Event()
        self._running = False
        self._stopping = False
        self._redis_ok = True

    items: MemoryObjectReceiveStream[WorkItem]
    """The work, in stream order per partition; ends when :meth:`run` ends."""

    @property
    def owned(self) -> frozenset[int]:
        """Partitions whose lease this replica holds and reads (draining ones excluded)."""
        now = anyio.current_time()
        return frozenset(
            p
            for p, held in self._held.items()
            if held.draining_since is None and held.valid_until > now
        )

    @property
    def members(self) -> tuple[str, ...]:
        """The live replicas at the last heartbeat."""
        return self._members

    def is_current(self, item: WorkItem) -> bool:
        """Whether ``item``'s lease is still held here: when not, its finish will be fenced."""
        held = self._held.get(item.partition)
        return (
            held is not None
            and held.epoch == item.epoch
            and held.valid_until > anyio.current_time()
        )

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Heartbeat, hold leases and feed :attr:`items` until cancelled or released."""
        self._running = True
        try:
            async with self._send, anyio.create_task_group() as tg:
                tg.start_soon(self._lease_loop)
                tg.start_soon(self._reader_loop)
                task_status.started()
        finally:
            self._running = False

    async def finish(
        self, items: WorkItem | Sequence[WorkItem], change: FinishChange = _SETTLE_ONLY
    ) -> FinishOutcome:
        """:meth:`RedisStore.finish` the items with ``change``, then :meth:`settle` them.

        On :class:`RedisUnavailable` the items stay unsettled: retry, or settle them.
        """
        batch = [items] if isinstance(items, WorkItem) else list(items)
        outcome = await self._store.finish(batch, change)
        self.settle(batch)
        return outcome

    def settle(self, items: WorkItem | Sequence[WorkItem]) -> None:
        """Stop counting ``items`` as in flight (a drain no longer waits for them).

        An item settled without a finish stays pending in Redis and is answered by the
        next owner of its partition. Settling twice is harmless.
        """
        for item in [items] if isinstance(items, WorkItem) else items:
            held = self._held.get(item.partition)
            if held is not None and held.epoch == item.epoch:
                held.inflight.discard(item.entry_id)
        self._settled.set()
        self._settled = anyio.Event()

    async def release_all(self, drain_seconds: float = 0.0) -> None:
        """Stop reading, wait up to ``drain_seconds`` for items in flight, release every lease.

        The other replicas adopt the partitions at their next tick; then :meth:`run`
        returns and :attr:`items` ends. Items still unfinished stay pending and are
        answered by the new owners. With Redis unreachable the leases expire instead.
        """
        self._stopping = True
        # Cancelling the reader may strand entries it had read and not handed out: they
        # are pending under this consumer, and the next owner claims them with the rest.
        self._reader_scope.cancel()
        if self._running:
            await self._reader_stopped.wait()
            with anyio.move_on_after(drain_seconds):
                while any(held.inflight for held in self._held.values()):
                    await self._settled.wait()
            self._lease_scope.cancel()
            await self._lease_stopped.wait()
        leases = [(p, f"{self.owner}|{held.epoch}") for p, held in self._held.items()]
        self._held.clear()
        try:
            with anyio.CancelScope(shield=True):
                released = await self._store._release_many(leases) if leases else 0
                await self._store._heartbeat_members(self.owner, 0)
        except RedisUnavailable as exc:
            logger.warning("could not hand the partitions over, their leases will expire: %s", exc)
        else:
            logger.info("released %d partitions and left the member set", released)
        await self._send.aclose()

    # -- leases ------------------------------------------------------------------------------

    async def _lease_loop(self) -> None:
        try:
            with self._lease_scope:
                while True:
                    await self._tick_once()
                    await anyio.sleep(self._tick)
        finally:
            self._lease_stopped.set()

    async def _tick_once(self) -> None:
        try:
            members = await self._store._heartbeat_members(self.owner, self._ttl_ms)
            self._members = tuple(sorted(set(members) | {self.owner}))
            wanted = _share(self._members, self.owner, self._store.keys.partitions)
            await self._renew_and_acquire(wanted)
            await self._hand_over(wanted)
        except RedisUnavailable as exc:
            self._note_failure(exc)
        else:
            self._note_success()
        finally:
            self._expire_local()

    async def _renew_and_acquire(self, wanted: frozenset[int]) -> None:
        now = anyio.current_time()
        requests = [
            (p, self.owner, 0) for p in sorted(wanted) if p not in self._held and not self._stopping
        ]
        requests += [
            (p, self.owner, held.epoch) for p, held in self._held.items() if now >= held.renew_at
        ]
        if not requests:
            return
        sent_at = anyio.current_time()
        results = await self._store._lease_many(requests, self._ttl_ms)
        taken: list[int] = []
        lost: dict[str, list[int]] = {}
        for (partition, _, _), (epoch, new, holder) in zip(requests, results, strict=True):
            held = self._held.get(partition)
            if epoch == 0:
                if held is not None:
                    lost.setdefault(f"it is held by {holder}", []).append(partition)
                continue
            if held is None or new or held.epoch != epoch:
                self._held[partition] = _Held(
                    epoch=epoch, valid_until=sent_at + self._ttl, renew_at=sent_at + self._ttl / 4
                )
                taken.append(partition)
            else:
                held.valid_until = sent_at + self._ttl
                held.renew_at = sent_at + self._ttl / 4
        if taken:
            logger.info("took partitions %s", _ranges(taken))
            self._wake()
        for why, partitions in lost.items():
            self._drop(partitions, why)

    async def _hand_over(self, wanted: frozenset[int]) -> None:
        now = anyio.current_time()
        done: list[tuple[int, str]] = []
        for partition, held in self._held.items():
            if partition in wanted:
                if held.draining_since is not None:
                    held.draining_since = None
                    held.ready = True
                    self._wake()
                continue
            if held.draining_since is None:
                held.draining_since = now
                logger.info(
                    "handing partition %d over to %s",
                    partition,
                    rendezvous_owner(self._members, partition),
                )
                self._wake()
            if not held.inflight or now - held.draining_since >= self._drain_timeout:
                done.append((partition, f"{self.owner}|{held.epoch}"))
        if done:
            await self._store._release_many(done)
            for partition, _ in done:
                self._held.pop(partition, None)
            logger.info("released partitions %s", _ranges([p for p, _ in done]))

    def _expire_local(self) -> None:
        now = anyio.current_time()
        expired = [p for p, held in self._held.items() if held.valid_until <= now]
        if expired:
            self._drop(expired, "their leases could not be renewed in time")

    def _drop(self, partitions: Sequence[int], why: str) -> None:
        """Forget leases that are no longer ours; their items in flight will be fenced."""
        gone = [(p, self._held.pop(p)) for p in partitions if p in self._held]
        if gone:
            logger.warning(
                "lost partitions %s: %s; %d items in flight will not be finished here",
                _ranges([p for p, _ in gone]),
                why,
                sum(len(held.inflight) for _, held in gone),
            )
            self._wake()

    # -- reading -----------------------------------------------------------------------------

    async def _reader_loop(self) -> None:
        try:
            with self._reader_scope:
                while True:
                    self._wakeup = anyio.Event()
                    try:
                        if not await self._read_once():
                            await self._wait()
                    except RedisUnavailable as exc:
                        self._note_failure(exc)
                        with anyio.move_on_after(self._tick):
                            await self._wakeup.wait()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass  # nobody reads the feed any more
        finally:
            self._reader_stopped.set()

    def _readable(self) -> dict[int, _Held]:
        now = anyio.current_time()
        return {
            p: held
            for p, held in self._held.items()
            if held.draining_since is None and held.valid_until > now
        }

    async def _read_once(self) -> bool:
        """Claim new partitions, read the ready ones; True when anything was read."""
        for partition, held in self._readable().items():
            if held.claimed or self._stopping:
                continue
            token = f"{self.owner}|{held.epoch}"
            claimed = await self._store._claim_all(partition, token, self.owner, 100)
            if not claimed:
                if self._held.get(partition) is held:
                    self._drop([partition], "another owner took it while it was being claimed")
                continue
            held.claimed, held.cursor, held.ready = True, "0-0", True
        ready = [(p, h) for p, h in self._readable().items() if h.claimed and h.ready]
        if not ready or self._stopping:
            return False
        reads = [(p, f"{self.owner}|{h.epoch}", self.owner, h.cursor) for p, h in ready]
        results = await self._store._read_many(reads, self._batch, self._max_deliveries)
        for (partition, held), (last, entries, dead) in zip(ready, results, strict=True):
            if self._held.get(partition) is not held:
                continue  # lost or taken anew meanwhile: what was read is claimed again
            if not last:
                self._drop([partition], "another owner holds its lease")
                continue
            held.cursor = last
            held.ready = len(entries) + len(dead) >= self._batch
            for entry in dead:
                logger.error(
                    "message %s: delivered %d times without an answer, moved to the "
                    "dead-letter stream of partition %d",
                    entry.message_id,
                    entry.deliveries,
                    partition,
                )
                item = self._item(partition, held, entry)
                if item is not None:
                    await self._send.send(replace(item, dead_lettered=True))
            for entry in entries:
                if self._held.get(partition) is not held or self._stopping:
                    break  # the rest stays pending for whoever owns the partition next
                item = self._item(partition, held, entry)
                if item is None:
                    continue
                held.inflight.add(entry.entry_id)
                try:
                    await self._send.send(item)
                except BaseException:
                    held.inflight.discard(entry.entry_id)
                    raise
        return True

    def _item(self, partition: int, held: _Held, entry: _Entry) -> WorkItem | None:
        try:
            message = InboundMessage.model_validate_json(entry.payload)
        except ValidationError as exc:
            # Left pending: it comes back at the next adoption and, after max_deliveries,
            # lands in the dead-letter stream, where an operator can look at it.
            logger.error(
                "message %s: stored message of partition %d is unreadable (%s)",
                entry.message_id,
                partition,
                exc.errors()[0]["msg"] if exc.errors() else "invalid",
            )
            return None
        return WorkItem(
            message=message,
            partition=partition,
            entry_id=entry.entry_id,
            owner=self.owner,
            epoch=held.epoch,
            delivery_count=entry.deliveries,
        )

    async def _wait(self) -> None:
        """Block until a stream has new entries, the ownership changes, or ``block`` passes."""
        readable = self._readable()
        if any(not held.claimed for held in readable.values()):
            return
        cursors = {p: held.cursor for p, held in readable.items()}
        ready: set[int] = set()
        try:
            with anyio.CancelScope() as scope:
                self._wait_scope = scope
                if self._wakeup.is_set():
                    return
                if not cursors:
                    with anyio.move_on_after(self._block_ms / 1000):
                        await self._wakeup.wait()
                    return
                # Cancelling a read-only XREAD loses nothing: the entries stay in the stream.
                ready = await self._store._wait_for_entries(cursors, self._block_ms)
        finally:
            self._wait_scope = None
        for partition in ready:
            held = self._held.get(partition)
            if held is not None and held.cursor == cursors.get(partition):
                held.ready = True

    def _wake(self) -> None:
        self._wakeup.set()
        if self._wait_scope is not None:
            self._wait_scope.cancel()

    def _note_failure(self, exc: RedisUnavailable) -> None:
        if self._redis_ok:
            logger.warning("partition ownership paused: %s", exc)
        self._redis_ok = False

    def _note_success(self) -> None:
        if not self._redis_ok:
            logger.info("partition ownership resumed: Redis answers again")
        self._redis_ok = True


def _ranges(partitions: Sequence[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` as ``0-2,5,7-8``: one short log field for many partitions."""
    spans: list[str] = []
    ordered = sorted(partitions)
    start = previous = ordered[0]
    for partition in [*ordered[1:], None]:
        if partition is not None and partition == previous + 1:
            previous = partition
            continue
        spans.append(str(start) if start == previous else f"{start}-{previous}")
        if partition is not None:
            start = previous = partition
    return ",".join(spans)
