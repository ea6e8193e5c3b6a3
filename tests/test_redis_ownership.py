"""Partition ownership on a real redis-server: sharing, adoption, fencing, order, poison."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup, TaskStatus

from larkbot.core.message import InboundMessage
from larkbot.store.redis import (
    FinishChange,
    FinishOutcome,
    MessageState,
    PartitionOwnership,
    RedisStore,
    RedisUnavailable,
    WorkItem,
    rendezvous_owner,
)
from tests._factories import inbound
from tests._redis import RedisServer, opened, requires_redis, take

pytestmark = [pytest.mark.anyio, requires_redis]

ALL = frozenset(range(64))
LEASE = 3.0
TICK = 0.25
# Room for a loaded two-core machine on top of each bound the design promises.
SLACK = 2.0


def replica(store: RedisStore, owner: str, **options: Any) -> PartitionOwnership:
    settings: dict[str, Any] = {"lease_ttl": LEASE, "tick": TICK, "block": 0.2, **options}
    return PartitionOwnership(store, owner=owner, **settings)


async def start(tg: TaskGroup, ownership: PartitionOwnership) -> anyio.CancelScope:
    """Run ``ownership`` in ``tg``; cancelling the returned scope is a crash (kill -9)."""
    scope = anyio.CancelScope()

    async def _run(*, task_status: TaskStatus[None]) -> None:
        with scope:
            await ownership.run(task_status=task_status)

    await tg.start(_run)
    return scope


async def until(condition: Any, within: float = 15) -> float:
    """Wait until ``condition()`` holds; return the seconds it took."""
    started = anyio.current_time()
    with anyio.fail_after(within):
        # Ownership is a state the replicas reach on their own ticks; nothing signals it.
        while not condition():  # noqa: ASYNC110
            await anyio.sleep(0.02)
    return anyio.current_time() - started


async def sole_owner(
    tg: TaskGroup, store: RedisStore, owner: str, **options: Any
) -> PartitionOwnership:
    """A replica started in ``tg`` on its own, once it owns every partition."""
    ownership = replica(store, owner, **options)
    await start(tg, ownership)
    await until(lambda: ownership.owned == ALL)
    return ownership


def settled(*replicas: PartitionOwnership) -> bool:
    """Every replica owns exactly its rendezvous share (so together they own all, once).

    Counting alone is not enough: right after a replica starts, the first one still owns
    all 64 and the newcomer none, which adds up too.
    """
    members = sorted(r.owner for r in replicas)
    return all(
        r.owned == {p for p in ALL if rendezvous_owner(members, p) == r.owner} for r in replicas
    )


def chats_of(owner: str, members: list[str], count: int, store: RedisStore) -> list[str]:
    """``count`` chat ids (in distinct partitions) that rendezvous gives to ``owner``."""
    found: list[str] = []
    partitions: set[int] = set()
    n = 0
    while len(found) < count:
        chat = f"oc_{owner}_{n}"
        n += 1
        partition = store.keys.partition_of(chat)
        if partition not in partitions and rendezvous_owner(members, partition) == owner:
            found.append(chat)
            partitions.add(partition)
    return found


def by_chat(items: list[WorkItem]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = defaultdict(list)
    for item in items:
        grouped[item.message.chat_id].append(item.message.message_id)
    return dict(grouped)


async def test_replicas_share_the_partitions_and_rebalance(redis_server: RedisServer) -> None:
    async with opened(redis_server) as store, anyio.create_task_group() as tg:
        a = await sole_owner(tg, store, "a")
        b, c = replica(store, "b"), replica(store, "c")
        await start(tg, b)
        await start(tg, c)
        await until(lambda: settled(a, b, c))
        assert frozenset().union(a.owned, b.owned, c.owned) == ALL
        assert all(len(r.owned) > 5 for r in (a, b, c))

        await c.release_all()
        await until(lambda: settled(a, b), within=TICK + SLACK)
        tg.cancel_scope.cancel()


async def test_items_come_in_stream_order_per_chat(redis_server: RedisServer) -> None:
    chats = [f"oc_order_{n}" for n in range(12)]
    sent: dict[str, list[InboundMessage]] = {
        chat: [inbound(chat) for _ in range(25)] for chat in chats
    }
    async with (
        opened(redis_server) as first,
        opened(redis_server) as second,
        anyio.create_task_group() as tg,
    ):

        async def send(chat: str, store: RedisStore) -> None:
            for message in sent[chat]:
                assert (await store.intake(message)).new

        async with anyio.create_task_group() as senders:
            for n, chat in enumerate(chats):
                senders.start_soon(send, chat, first if n % 2 else second)

        ownership = replica(first, "solo")
        await start(tg, ownership)
        items = await take(ownership, 300)
        assert by_chat(items) == {chat: [m.message_id for m in sent[chat]] for chat in chats}
        for item in items:
            assert item.delivery_count == 1 and not item.dead_lettered
            await ownership.finish(
                item, FinishChange(user_text=item.message.text, answer_text="ok")
            )
        assert sum(q.length for q in await first.backlog()) == 0

        # New messages arrive while the replica waits on XREAD: they come at once, in order.
        late = [inbound(chats[0]) for _ in range(5)]
        await second.intake_many(late)
        assert [i.message for i in await take(ownership, 5, within=5)] == late
        tg.cancel_scope.cancel()


async def test_a_killed_replicas_pending_work_is_adopted_in_order(
    redis_server: RedisServer,
) -> None:
    async with opened(redis_server) as store_a, opened(redis_server) as store_b:
        async with anyio.create_task_group() as tg:
            a, b = replica(store_a, "a"), replica(store_b, "b")
            kill_a = await start(tg, a)
            await start(tg, b)
            await until(lambda: settled(a, b))

            chats = chats_of("a", ["a", "b"], 3, store_a)
            messages = [inbound(chat, text=str(n)) for n in range(5) for chat in chats]
            await store_b.intake_many(messages)
            in_flight = await take(a, len(messages))  # taken, never finished: mid-answer
            assert sorted(i.message.message_id for i in in_flight) == sorted(
                m.message_id for m in messages
            )

            kill_a.cancel()  # no release: leases and the heartbeat are left to expire
            killed_at = anyio.current_time()
            adopted = await take(b, len(messages), within=LEASE + TICK + SLACK + 5)
            first_adopted = anyio.current_time() - killed_at
            # The first item arrives within lease TTL + one tick (+ room for a busy machine).
            assert first_adopted <= LEASE + TICK + SLACK, first_adopted
            assert by_chat(adopted) == by_chat([i for i in in_flight])
            assert all(item.delivery_count == 2 for item in adopted)  # to a, then to b
            assert {i.partition for i in adopted} <= b.owned
            for item in adopted:
                assert (
                    await b.finish(item, FinishChange(answer_text="ok")) is FinishOutcome.FINISHED
                )
            tg.cancel_scope.cancel()

        backlog = await store_b.backlog()
        assert sum(q.length for q in backlog) == 0 and sum(q.pending for q in backlog) == 0
        partition = store_b.keys.partition_of(chats[0])
        consumers = await store_b._client.xinfo_consumers(store_b.keys.stream(partition), "larkbot")
        assert [c["name"] for c in consumers] == [b"b"]  # the dead replica's consumer is gone


async def test_a_released_replica_is_adopted_at_once_after_its_items_finish(
    redis_server: RedisServer,
) -> None:
    async with opened(redis_server) as store, anyio.create_task_group() as tg:
        a, b = replica(store, "a", tick=0.5), replica(store, "b", tick=0.5)
        await start(tg, a)
        await start(tg, b)
        await until(lambda: settled(a, b))
        chat = chats_of("a", ["a", "b"], 1, store)[0]
        finished, unfinished = inbound(chat, text="finished"), inbound(chat, text="unfinished")
        await store.intake_many([finished, unfinished])
        first, second = await take(a, 2)

        released = anyio.Event()

        async def release() -> None:
            await a.release_all(drain_seconds=30)
            released.set()

        tg.start_soon(release)
        await anyio.sleep(0.3)
        assert not released.is_set()  # waits for the items it handed out
        assert await a.finish(first, FinishChange(answer_text="done")) is FinishOutcome.FINISHED
        a.settle(second)  # given up: left pending for the next owner
        with anyio.fail_after(5):
            await released.wait()
        took = await until(lambda: b.owned == ALL, within=0.5 + SLACK)
        assert took <= 0.5 + SLACK
        [adopted] = await take(b, 1)
        assert adopted.message == unfinished, adopted
        assert adopted.delivery_count == 2, adopted.delivery_count
        assert [i async for i in a.items] == []  # a's feed has ended
        tg.cancel_scope.cancel()


async def test_an_owner_that_stopped_renewing_is_fenced(redis_server: RedisServer) -> None:
    async with (
        opened(redis_server) as store_a,
        opened(redis_server) as store_b,
        anyio.create_task_group() as tg,
    ):
        a = await sole_owner(tg, store_a, "a")
        message = inbound("oc_pause", text="question")
        await store_a.intake(message)
        [stale] = await take(a, 1)
        await store_a.put_answer(message.chat_id, message.message_id, "answer by a")

        # A pause: a's renewals stop (its reader keeps going) for longer than the lease.
        assert a._lease_scope is not None
        a._lease_scope.cancel()
        b = replica(store_b, "b")
        await start(tg, b)
        [adopted] = await take(b, 1, within=LEASE * 2 + TICK + SLACK)
        assert adopted.entry_id == stale.entry_id and adopted.epoch > stale.epoch
        assert not a.is_current(stale) and b.is_current(adopted)

        # The stale owner wakes up and finishes: nothing is written.
        outcome = await a.finish(
            stale, FinishChange(user_text="question", answer_text="answer by a")
        )
        assert outcome is FinishOutcome.FENCED
        assert await store_a.history("oc_pause") == []
        assert await store_a.message_state("oc_pause", message.message_id) is MessageState.PENDING

        # The new owner reuses the answer already generated, so the chat and history agree.
        cached = await store_b.get_answer(message.chat_id, message.message_id)
        assert cached is not None and cached.text == "answer by a"
        reused = FinishChange(user_text="question", answer_text=cached.text)
        assert await b.finish(adopted, reused) is FinishOutcome.FINISHED
        assert await a.finish(stale, FinishChange(answer_text="late")) is FinishOutcome.FENCED
        assert [t.text for t in await store_b.history("oc_pause")] == ["question", "answer by a"]

        # New messages go to b only; a's reader stopped feeding when its leases ran out.
        later = inbound("oc_pause", text="later")
        await store_b.intake(later)
        [fresh] = await take(b, 1)
        assert fresh.message == later
        with anyio.move_on_after(0.5):
            unexpected = await a.items.receive()
            pytest.fail(f"a stale owner was fed {unexpected}")
        tg.cancel_scope.cancel()


async def test_a_message_delivered_too_often_goes_to_the_dead_letter_stream(
    redis_server: RedisServer,
) -> None:
    async with opened(redis_server) as store:
        poison = inbound("oc_poison", text="crashes every replica")
        await store.intake(poison)
        for attempt in (1, 2):
            async with anyio.create_task_group() as tg:
                ownership = replica(store, f"r{attempt}", max_deliveries=2)
                await start(tg, ownership)
                [item] = await take(ownership, 1)
                assert item.delivery_count == attempt and not item.dead_lettered
                await ownership.release_all()  # handed over unfinished, as after a crash

        async with anyio.create_task_group() as tg:
            last = replica(store, "r3", max_deliveries=2)
            await start(tg, last)
            [item] = await take(last, 1)
            assert item.dead_lettered and item.delivery_count == 3 and item.message == poison
            tg.cancel_scope.cancel()

        partition = store.keys.partition_of("oc_poison")
        assert await store._client.xlen(store.keys.stream(partition)) == 0
        [(_, fields)] = await store._client.xrange(store.keys.dead_letters(partition))
        assert fields[b"id"] == poison.message_id.encode() and fields[b"deliveries"] == b"3"
        assert (await store.inspect()).dead_letters == 1


async def test_a_partition_moves_only_after_its_items_are_finished(
    redis_server: RedisServer,
) -> None:
    async with opened(redis_server) as store, anyio.create_task_group() as tg:
        a = await sole_owner(tg, store, "a", drain_timeout=30)
        chat = chats_of("b", ["a", "b"], 1, store)[0]
        partition = store.keys.partition_of(chat)
        first = inbound(chat, text="first")
        await store.intake(first)
        [item] = await take(a, 1)

        b = replica(store, "b")
        await start(tg, b)
        share_b = {p for p in ALL if rendezvous_owner(["a", "b"], p) == "b"}
        await until(lambda: b.owned == share_b - {partition})
        second = inbound(chat, text="second")
        await store.intake(second)
        await anyio.sleep(3 * TICK)
        assert partition not in b.owned  # still draining on a
        assert partition not in a.owned  # and a reads nothing new from it

        assert await a.finish(item, FinishChange(answer_text="one")) is FinishOutcome.FINISHED
        await until(lambda: b.owned == share_b, within=TICK + SLACK)
        [moved] = await take(b, 1)
        assert moved.message == second and moved.delivery_count == 1
        tg.cancel_scope.cancel()


async def test_ownership_survives_a_redis_restart(redis_server: RedisServer) -> None:
    async with opened(redis_server, command_timeout=0.5) as store, anyio.create_task_group() as tg:
        ownership = await sole_owner(tg, store, "solo")
        before = inbound("oc_restart", text="before")
        await store.intake(before)
        [item] = await take(ownership, 1)

        await redis_server.stop()
        await until(lambda: not ownership.owned, within=LEASE + TICK + SLACK)
        await redis_server.start()  # AOF: the unfinished entry is still there

        after = inbound("oc_restart", text="after")
        with anyio.fail_after(10):
            while True:
                try:
                    await store.intake(after)
                    break
                except RedisUnavailable:  # Redis is still loading its AOF
                    await anyio.sleep(0.1)
        items = await take(ownership, 2, within=LEASE + TICK + SLACK + 5)
        # The earlier item comes again (a new epoch fenced the old one), then the new one.
        assert [i.message for i in items] == [before, after]
        assert (
            await ownership.finish(item, FinishChange(answer_text="stale")) is FinishOutcome.FENCED
        )
        for fresh in items:
            assert (
                await ownership.finish(fresh, FinishChange(answer_text="ok"))
                is FinishOutcome.FINISHED
            )
        tg.cancel_scope.cancel()


async def test_release_does_not_wait_for_a_reader_blocked_on_a_full_feed(
    redis_server: RedisServer,
) -> None:
    async with opened(redis_server) as store:
        chat = "oc_full"
        messages = [inbound(chat, text=str(n)) for n in range(6)]
        await store.intake_many(messages)
        async with anyio.create_task_group() as tg:
            a = await sole_owner(tg, store, "a", buffer=1)
            [first] = await take(a, 1)
            await until(lambda: a.items.statistics().current_buffer_used == 1)
            # The reader now waits for room in the feed; nobody reads it any more.
            with anyio.fail_after(2):
                await a.release_all(drain_seconds=0)

        async with anyio.create_task_group() as tg:
            b = replica(store, "b")
            await start(tg, b)
            adopted = await take(b, 6)
            assert [i.message for i in adopted] == messages  # all of them, in order
            assert adopted[0].entry_id == first.entry_id
            tg.cancel_scope.cancel()


async def test_a_lease_too_short_for_a_one_second_tick_is_held_without_one(
    redis_server: RedisServer,
) -> None:
    # The tick defaults to a quarter of the lease: a fixed 1 s one would not fit in 1 s.
    async with opened(redis_server, partitions=4) as store, anyio.create_task_group() as tg:
        quick = PartitionOwnership(store, owner="quick", lease_ttl=1.0)
        await start(tg, quick)
        await until(lambda: quick.owned == frozenset(range(4)))
        tg.cancel_scope.cancel()
