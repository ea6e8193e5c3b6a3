"""The Redis store on a real redis-server: intake, answers, history, limits, outages."""

from __future__ import annotations

import ssl
import threading
import zlib
from pathlib import Path
from typing import Any

import anyio
import pytest

from larkbot.store.redis import (
    KEEP,
    FinishChange,
    FinishOutcome,
    Keyspace,
    MessageState,
    PartitionOwnership,
    RedisConfigError,
    RedisEndpoint,
    RedisStore,
    RedisUnavailable,
    WorkItem,
)
from tests._confirmations import check_confirmation_attempts
from tests._factories import inbound
from tests._redis import RedisServer, opened, redis_server, requires_redis, take

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-Pa55"


# -- parsing and key layout (no server) -------------------------------------------------------


def test_endpoint_keeps_the_password_out_of_the_url_repr_and_errors() -> None:
    endpoint = RedisEndpoint.parse(
        f"rediss://app:{SECRET}@redis.internal:6380/2?ssl_cert_reqs=none"
    )
    assert endpoint.password is not None and endpoint.password.get_secret_value() == SECRET
    assert endpoint.username == "app"
    assert endpoint.tls
    assert (
        SECRET not in endpoint.url and SECRET not in repr(endpoint) and SECRET not in str(endpoint)
    )
    assert endpoint.display == "rediss://redis.internal:6380/2"
    assert "ssl_cert_reqs=none" in endpoint.url  # options reach the client
    assert endpoint.scrub(f"error near {SECRET}") == "error near ***"

    separate = RedisEndpoint.parse("redis://:inurl@127.0.0.1:6379/0", password=SECRET)
    assert separate.password is not None and separate.password.get_secret_value() == SECRET
    in_query = RedisEndpoint.parse(f"redis://127.0.0.1/0?password={SECRET}")
    assert in_query.password is not None and SECRET not in in_query.url

    for bad in (f"http://:{SECRET}@host:6379", f"redis://:{SECRET}@/0", f"redis://:{SECRET}@h/x"):
        with pytest.raises(RedisConfigError) as caught:
            RedisEndpoint.parse(bad)
        assert SECRET not in str(caught.value)
        assert "\n" not in str(caught.value)
    assert RedisEndpoint.parse("unix:///run/redis/redis.sock").display.startswith("unix://")


def test_keyspace_partitions_by_crc32_with_hash_tags() -> None:
    keys = Keyspace()
    assert keys.partition_of("oc_abc") == zlib.crc32(b"oc_abc") % 64
    partition = keys.partition_of("oc_abc")
    assert keys.partition_of_conversation("oc_abc:om_root") == partition
    tag = f"lb:{{p{partition:02d}}}"
    assert keys.stream(partition) == f"{tag}:in"
    assert keys.seen(partition, "om_1") == f"{tag}:seen:om_1"
    assert keys.lease(partition) == f"{tag}:lease"
    assert keys.conversation(partition, "oc_abc:om_root") == f"{tag}:conv:oc_abc:om_root"
    assert keys.split(keys.done(partition, "om_1")) == (partition, "done")
    assert keys.rate("ou_1", "write") == "lb:{rl:ou_1}:write"
    assert Keyspace("blue", 128).stream(5) == "blue:{p005}:in"
    for prefix in ("", "a:b", "x{y}", "star*"):
        with pytest.raises(RedisConfigError):
            Keyspace(prefix)


async def test_the_store_shows_its_bounds_read_only() -> None:
    # Opening sends nothing to Redis: no server is needed to read the bounds.
    async with RedisStore.open(
        "redis://127.0.0.1:1/0", command_timeout=1.5, intake_timeout=0.25, max_turns=7
    ) as store:
        assert (store.command_timeout, store.intake_timeout, store.max_turns) == (1.5, 0.25, 7)
        with pytest.raises(AttributeError):
            store.command_timeout = 9.0  # type: ignore[misc]


# -- intake -----------------------------------------------------------------------------------


@requires_redis
async def test_concurrent_intake_from_two_clients_admits_each_message_exactly_once(
    redis_server: RedisServer,
) -> None:
    messages = [inbound(f"oc_{i % 7}") for i in range(60)]
    results: list[bool] = []
    async with opened(redis_server) as first, opened(redis_server) as second:

        async def admit(store: RedisStore, index: int) -> None:
            results.append((await store.intake(messages[index])).new)

        async with anyio.create_task_group() as tg:
            for index in range(len(messages)):
                for store in (first, second, first, second):
                    tg.start_soon(admit, store, index)
        assert sorted(results).count(True) == len(messages)
        assert len(results) == 4 * len(messages)

        client = first._client
        keys = first.keys
        queued = sum([await client.xlen(keys.stream(p)) for p in range(keys.partitions)])
        assert queued == len(messages)
        ttl = await client.pttl(keys.seen(keys.partition_of("oc_0"), messages[0].message_id))
        assert 86_000_000 < ttl <= 86_400_000
        assert await second.message_state("oc_0", messages[0].message_id) is MessageState.PENDING
        assert await second.message_state("oc_0", "om_never") is MessageState.UNKNOWN


@requires_redis
async def test_batched_intake_is_one_script_call_per_message_in_one_round_trip(
    redis_server: RedisServer,
) -> None:
    async with opened(redis_server) as store:
        before = await store.intake_many([inbound("oc_a", message_id="om_old")])
        assert before[0].new
        batch = [
            inbound("oc_a", message_id="om_old"),
            inbound("oc_a", message_id="om_1"),
            inbound("oc_b", message_id="om_2"),
            inbound("oc_a", message_id="om_1"),  # twice in one batch
            inbound("oc_c", message_id="om_3"),
        ]
        stats = await store._client.info("commandstats")
        results = await store.intake_many(batch)
        after = await store._client.info("commandstats")
        assert [r.new for r in results] == [False, True, True, False, True]
        assert [r.message_id for r in results] == [m.message_id for m in batch]
        assert results[1].partition == store.keys.partition_of("oc_a")
        calls = after["cmdstat_evalsha"]["calls"] - stats["cmdstat_evalsha"]["calls"]
        assert calls == len(batch)
        # No SCRIPT EXISTS round trip before the batch (redis-py's own pipeline would add one).
        assert after.get("cmdstat_script") == stats.get("cmdstat_script")
        assert await store.intake_many([]) == []


@requires_redis
async def test_intake_order_is_the_stream_order_of_each_chat(redis_server: RedisServer) -> None:
    async with opened(redis_server) as first, opened(redis_server) as second:
        sent = [inbound("oc_order", text=str(n)) for n in range(40)]
        for n, message in enumerate(sent):
            assert (await (first if n % 2 else second).intake(message)).new
        keys = first.keys
        entries = await first._client.xrange(keys.stream(keys.partition_of("oc_order")))
        assert [fields[b"id"].decode() for _, fields in entries] == [m.message_id for m in sent]


# -- answers, conversations, the fenced finish ----------------------------------------------


@requires_redis
async def test_confirmation_attempts_are_compare_and_set_across_clients(
    redis_server: RedisServer,
) -> None:
    async with opened(redis_server) as first, opened(redis_server) as second:
        await check_confirmation_attempts(first, second)


@requires_redis
async def test_first_stored_answer_wins_and_finish_drops_it(redis_server: RedisServer) -> None:
    async with opened(redis_server) as store:
        message = inbound("oc_answer")
        assert (await store.intake(message)).new
        assert await store.get_answer("oc_answer", message.message_id) is None
        first = await store.put_answer("oc_answer", message.message_id, "**A**", markdown=True)
        second = await store.put_answer("oc_answer", message.message_id, "B")
        assert second == first and second.text == "**A**" and second.markdown
        assert await store.get_answer("oc_answer", message.message_id) == first

        ownership = PartitionOwnership(store, lease_ttl=5, tick=0.2)
        async with anyio.create_task_group() as tg:
            await tg.start(ownership.run)
            [item] = await take(ownership, 1)
            assert item.message == message and item.delivery_count == 1
            outcome = await ownership.finish(
                item, FinishChange(user_text=message.text, answer_text=first.text)
            )
            assert outcome is FinishOutcome.FINISHED
            tg.cancel_scope.cancel()
        assert await store.get_answer("oc_answer", message.message_id) is None


@requires_redis
async def test_finish_appends_trims_expires_and_never_doubles_a_turn(
    redis_server: RedisServer,
) -> None:
    async with opened(redis_server, max_turns=4, conversation_ttl_seconds=30) as store:
        chat = "oc_conv"
        messages = [inbound(chat, text=f"q{n}") for n in range(3)]
        await store.intake_many(messages)
        ownership = PartitionOwnership(store, lease_ttl=5, tick=0.2)
        async with anyio.create_task_group() as tg:
            await tg.start(ownership.run)
            items = await take(ownership, 3)
            assert [i.message.text for i in items] == ["q0", "q1", "q2"]
            language = await ownership.finish(
                items[0],
                FinishChange(user_text="q0", answer_text="a0", language="ja", profile="brief"),
            )
            assert language is FinishOutcome.FINISHED
            again = await store.finish(items[0], FinishChange(user_text="q0", answer_text="a0"))
            assert again is FinishOutcome.ALREADY_DONE
            await ownership.finish(
                items[1], FinishChange(user_text="q1", answer_text="a1", profile=None)
            )
            await ownership.finish(
                items[2], FinishChange(user_text="q2", answer_text="a2", language=KEEP)
            )
            tg.cancel_scope.cancel()

        conversation = await store.conversation(chat)
        assert [t.text for t in conversation.turns] == ["q1", "a1", "q2", "a2"]
        assert [t.role for t in conversation.turns] == ["user", "assistant"] * 2
        assert conversation.language == "ja" and conversation.profile is None
        assert [t.text for t in await store.history(chat, limit=1)] == ["a2"]
        assert (await store.conversation(chat, limit=0)).language == "ja"
        assert await store.history(chat, limit=0) == []
        partition = store.keys.partition_of(chat)
        ttl = await store._client.pttl(store.keys.conversation(partition, chat))
        assert 0 < ttl <= 30_000
        assert await store._client.xlen(store.keys.stream(partition)) == 0
        for message in messages:
            assert await store.message_state(chat, message.message_id) is MessageState.DONE
        await store.forget(chat)
        assert await store.history(chat) == []


@requires_redis
async def test_a_burst_finishes_in_one_step(redis_server: RedisServer) -> None:
    async with opened(redis_server) as store:
        burst = [inbound("oc_burst", text=t) for t in ("a", "b", "c")]
        await store.intake_many(burst)
        ownership = PartitionOwnership(store, lease_ttl=5, tick=0.2)
        async with anyio.create_task_group() as tg:
            await tg.start(ownership.run)
            items = await take(ownership, 3)
            outcome = await ownership.finish(
                items, FinishChange(user_text="a\nb\nc", answer_text="abc")
            )
            assert outcome is FinishOutcome.FINISHED
            tg.cancel_scope.cancel()
        assert [t.text for t in await store.history("oc_burst")] == ["a\nb\nc", "abc"]
        for message in burst:
            assert await store.message_state("oc_burst", message.message_id) is MessageState.DONE
        with pytest.raises(ValueError, match="share a partition"):
            other = inbound("oc_elsewhere")
            await store.finish([items[0], WorkItem(other, 99, "1-0", items[0].owner, 1, 1)])


# -- rate limits ------------------------------------------------------------------------------


@requires_redis
async def test_rate_limit_counts_exactly_across_two_clients(redis_server: RedisServer) -> None:
    async with opened(redis_server) as first, opened(redis_server) as second:
        decisions = []

        async def call(store: RedisStore) -> None:
            decisions.append(await store.rate_limit("ou_busy", "msg", 7))

        async with anyio.create_task_group() as tg:
            for n in range(40):
                tg.start_soon(call, first if n % 2 else second)
        allowed = [d for d in decisions if d.allowed]
        refused = [d for d in decisions if not d.allowed]
        assert len(allowed) == 7 and len(refused) == 33
        assert sorted(d.remaining for d in allowed) == list(range(7))
        assert all(0 < d.retry_after <= 60 for d in refused)
        # Other kinds and other users have windows of their own.
        assert (await first.rate_limit("ou_busy", "write", 1)).allowed
        assert not (await second.rate_limit("ou_busy", "write", 1)).allowed
        assert (await second.rate_limit("ou_calm", "msg", 7)).allowed


# -- health and outages -----------------------------------------------------------------------


@requires_redis
async def test_info_reports_what_doctor_checks(redis_server: RedisServer) -> None:
    async with opened(redis_server) as store:
        info = await store.info()
        assert info.version.startswith(("6.", "7.", "8."))
        assert info.maxmemory_policy == "noeviction" and info.aof_enabled and info.persistent
        assert info.appendfsync == "everysec"
        assert info.problems() == []
        await store._client.config_set("maxmemory-policy", "allkeys-lru")
        await store._client.config_set("appendonly", "no")
        problems = (await store.info()).problems()
        assert len(problems) == 2
        assert "noeviction" in problems[0] and "appendonly yes" in problems[1]
        assert await store.ping() < 2


@requires_redis
async def test_replicas_must_agree_on_the_partition_count(redis_server: RedisServer) -> None:
    async with opened(redis_server) as first, opened(redis_server, partitions=32) as other:
        await first.verify_layout()
        await first.verify_layout()
        with pytest.raises(RedisConfigError, match="64") as caught:
            await other.verify_layout()
        assert "\n" not in str(caught.value)
    async with opened(redis_server, prefix="green", partitions=32) as green:
        await green.verify_layout()  # another deployment: its own layout


@requires_redis
async def test_a_full_redis_refuses_intake_and_says_so(redis_server: RedisServer) -> None:
    async with opened(redis_server) as store:
        await store._client.config_set("maxmemory", "1")  # noeviction: every write fails
        with pytest.raises(RedisUnavailable, match="out of memory and refused intake") as caught:
            await store.intake(inbound("oc_full"))
        assert "script" not in str(caught.value) and "\n" not in str(caught.value)
        await store._client.config_set("maxmemory", "0")
        assert (await store.intake(inbound("oc_full"))).new


@requires_redis
async def test_stopped_redis_raises_redis_unavailable_within_the_bound(tmp_path: Path) -> None:
    async with (
        redis_server(tmp_path / "redis", password=SECRET) as server,
        opened(server, intake_timeout=0.5, command_timeout=1.0) as store,
    ):
        assert (await store.intake(inbound("oc_x", message_id="om_before"))).new
        assert store.outage_seconds == 0.0
        await server.stop()
        started = anyio.current_time()
        with pytest.raises(RedisUnavailable) as caught:
            await store.intake(inbound("oc_x", message_id="om_during"))
        assert anyio.current_time() - started < 0.5 + 1.0
        message = str(caught.value)
        assert SECRET not in message and "\n" not in message
        assert "redis://127.0.0.1" in message
        for operation in (
            store.ping(),
            store.history("oc_x"),
            store.rate_limit("ou_1", "msg", 5),
            store.get_answer("oc_x", "om_before"),
        ):
            started = anyio.current_time()
            with pytest.raises(RedisUnavailable):
                await operation
            assert anyio.current_time() - started < 1.0 + 1.0

        assert store.outage_seconds > 0
        await server.start()  # same directory: the AOF brings the queue back
        assert not (await store.intake(inbound("oc_x", message_id="om_before"))).new
        assert (await store.intake(inbound("oc_x", message_id="om_during"))).new
        assert store.outage_seconds == 0.0


@requires_redis
async def test_frozen_redis_times_out_within_the_bound(redis_server: RedisServer) -> None:
    async with opened(redis_server, intake_timeout=0.4, command_timeout=0.8) as store:
        await store.ping()
        redis_server.freeze()
        try:
            started = anyio.current_time()
            with pytest.raises(RedisUnavailable, match=r"did not answer intake within 0\.4 s"):
                await store.intake(inbound("oc_f"))
            assert anyio.current_time() - started < 0.4 + 1.0
            started = anyio.current_time()
            with pytest.raises(RedisUnavailable, match=r"did not answer a ping within 0\.2 s"):
                await store.ping(bound=0.2)
            assert anyio.current_time() - started < 0.2 + 1.0
        finally:
            redis_server.thaw()
        # The connections cancelled mid-call are dropped, so later replies stay correct.
        message = inbound("oc_f")
        assert (await store.intake(message)).new
        assert not (await store.intake(message)).new


@requires_redis
async def test_wrong_password_is_one_sentence_without_the_password(tmp_path: Path) -> None:
    async with redis_server(tmp_path / "redis", password=SECRET) as server:
        async with RedisStore.open(server.url, password="not-" + SECRET) as store:
            with pytest.raises(RedisUnavailable) as caught:
                await store.ping()
        message = str(caught.value)
        assert "password" in message and SECRET not in message and "\n" not in message
        async with RedisStore.open(server.url.replace("//", f"//:{SECRET}@")) as store:
            await store.ping()
            assert SECRET not in repr(store)


@requires_redis
async def test_rediss_with_a_password_works_without_blocking_the_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with redis_server(tmp_path / "redis", password=SECRET, tls=True) as server:
        # redis-py reads the CA file for every new TLS connection, on the event loop; the
        # store must read it once, in a worker thread. Count where it is read.
        on_loop: list[bool] = []
        real = ssl.SSLContext.load_verify_locations

        def spy(self: ssl.SSLContext, *args: Any, **kwargs: Any) -> None:
            on_loop.append(threading.current_thread() is threading.main_thread())
            real(self, *args, **kwargs)

        monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", spy)
        async with RedisStore.open(
            server.url, password=SECRET, max_connections=8, intake_timeout=3.0
        ) as store:
            assert store.endpoint.tls and SECRET not in repr(store)
            messages = [inbound("oc_tls") for _ in range(20)]
            async with anyio.create_task_group() as tg:  # several connections at once
                for message in messages:
                    tg.start_soon(store.intake, message)
            for message in messages:
                assert not (await store.intake(message)).new
            assert (await store.info()).version
        assert on_loop == [False]

    async with redis_server(tmp_path / "plain") as plain:
        with pytest.raises(RedisUnavailable) as caught:
            async with RedisStore.open(
                plain.url.replace("redis://", "rediss://") + f"?ssl_ca_certs={server.ca_file}",
                command_timeout=1.0,
            ) as store:
                await store.ping()
        assert "\n" not in str(caught.value)
