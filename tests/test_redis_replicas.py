"""Several ``larkbot run`` processes on one real redis-server, one Lark stand-in delivering
as the platform does to several connections (cluster mode), and an LLM that takes 0.3 s.

Each drill checks what a user and an operator would: every message answered exactly
once (the stand-in shows a reply once per ``uuid``: a second *visible* reply would be a
second record), each chat's replies in the order its messages were accepted, the shared
history without a doubled turn, and nothing left pending in Redis.

The driver sends a chat's next message once the previous one was acked with 200, as the
order of a chat is the order in which Redis accepted its messages (a message refused or
not acked comes back later, maybe to another replica).
"""

from __future__ import annotations

import re
import signal
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from larkbot.store.redis import RedisStore
from larkbot.testing import LarkStandIn
from tests._proc import LarkbotProcess, larkbot_process, llm_env, needs_llm, reply_text, slow_llm
from tests._redis import RedisServer, redis_server, requires_redis

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.slow,
    requires_redis,
    needs_llm,
]

AGENT_SECONDS = 0.3


@dataclass
class Cluster:
    """The processes, the stand-ins and what the driver sent."""

    lark: LarkStandIn
    redis: RedisServer
    store: RedisStore
    replicas: list[LarkbotProcess]
    sent: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    texts: dict[str, str] = field(default_factory=dict)

    @property
    def total_sent(self) -> int:
        return sum(len(ids) for ids in self.sent.values())

    async def lease_owners(self) -> dict[int, str]:
        """Partition → the owner id holding its lease now."""
        keys = [self.store.keys.lease(p) for p in range(self.store.keys.partitions)]
        values = await self.store._client.mget(keys)
        return {
            p: _text(value).rpartition("|")[0]
            for p, value in enumerate(values)
            if value is not None
        }

    async def wait_spread(self, replicas: int, timeout: float = 30.0) -> dict[int, str]:  # noqa: ASYNC109
        """Wait until every partition is held and ``replicas`` owners share them."""
        with anyio.fail_after(timeout):
            while True:
                owners = await self.lease_owners()
                if (
                    len(owners) == self.store.keys.partitions
                    and len(set(owners.values())) == replicas
                ):
                    return owners
                await anyio.sleep(0.2)

    def owner_of(self, process: LarkbotProcess) -> str:
        return f":{process.process.pid}:"

    async def wait_drained(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109
        """Wait until every message is answered and no partition holds anything."""
        with anyio.move_on_after(timeout):
            while True:
                backlog = await self.store.backlog()
                answered = {r.to_message_id for r in self.lark.replies}
                missing = [mid for ids in self.sent.values() for mid in ids if mid not in answered]
                if not sum(p.length for p in backlog) and not missing:
                    return
                await anyio.sleep(0.25)
        problems = [
            f"{line.get('levelname') or line.get('level')}: {line.get('message')}"
            for replica in self.replicas
            for line in replica.lines
            if str(line.get("levelname") or line.get("level")).upper() in ("WARNING", "ERROR")
        ]
        raise AssertionError(
            f"not drained after {timeout:g} s: unanswered {missing[:10]} ({len(missing)}), "
            f"backlog {[p for p in backlog if p.length]}; replica warnings: {problems[-30:]}"
        )

    async def check_exactly_once_in_order(self) -> None:
        """Each message one visible reply with its own answer; chats in order; history once."""
        replies: dict[str, list[str]] = defaultdict(list)
        order: dict[str, list[str]] = defaultdict(list)
        for reply in self.lark.replies:
            assert reply.to_message_id is not None
            replies[reply.to_message_id].append(reply_text(reply))
            order[str(reply.chat_id)].append(reply.to_message_id)
        for chat, ids in self.sent.items():
            for message_id in ids:
                assert replies[message_id] == [f"LLM: {self.texts[message_id]}"], message_id
            assert order[chat] == ids, chat
            history = await self.store.history(chat)
            users = [turn.text for turn in history if turn.role == "user"]
            assert users == [self.texts[mid] for mid in ids][-len(users) :], chat
            assert len(users) == min(len(ids), self.store.max_turns // 2), chat
        backlog = await self.store.backlog()
        assert sum(p.length for p in backlog) == 0, [p for p in backlog if p.length]
        counts = await self.store.inspect()
        assert counts.dead_letters == 0


@asynccontextmanager
async def cluster(
    tmp_path: Path,
    replicas: int,
    *,
    env: Mapping[str, str] | None = None,
) -> AsyncIterator[Cluster]:
    """``replicas`` processes on one Redis and one stand-in in cluster mode, spread out."""
    async with AsyncExitStack() as stack:
        redis = await stack.enter_async_context(redis_server(tmp_path / "redis"))
        llm = await stack.enter_async_context(slow_llm(AGENT_SECONDS))
        lark = await stack.enter_async_context(LarkStandIn())
        lark.cluster_mode()
        store = await stack.enter_async_context(RedisStore.open(redis.url))
        full_env = {
            "REDIS_URL": redis.url,
            "LARKBOT_STORE": "redis",
            "LARKBOT_SHUTDOWN__GRACE_SECONDS": "10",
            **llm_env(llm),
            **(env or {}),
        }
        processes = []
        for n in range(replicas):
            state = tmp_path / f"replica{n}"
            state.mkdir()
            processes.append(
                await stack.enter_async_context(
                    larkbot_process(lark, state, full_env, ready_timeout=30)
                )
            )
        running = Cluster(lark, redis, store, processes)
        await running.wait_spread(replicas)
        yield running


async def drive(
    running: Cluster,
    chats: int,
    per_chat: int,
    *,
    at_fraction: float = 1.0,
    then: Callable[[], Any] | None = None,
    sender: Callable[[int], str] = lambda chat: f"ou_user_{chat}",
    chat_ids: list[str] | None = None,
) -> None:
    """Send ``per_chat`` messages in each of ``chats`` chats, all chats at once.

    Each chat sends its next message once the previous one was acked with 200. Once
    ``at_fraction`` of all messages are accepted, ``then()`` runs (a kill, a freeze...).
    """
    total = chats * per_chat
    reached = anyio.Event()
    accepted = 0
    names = chat_ids or [f"oc_chat_{n:03d}" for n in range(chats)]

    async def one_chat(index: int) -> None:
        nonlocal accepted
        chat = names[index]
        for n in range(per_chat):
            text = f"{chat} message {n}"
            message_id = await running.lark.send_text(
                text, chat_id=chat, sender_open_id=sender(index)
            )
            running.sent[chat].append(message_id)
            running.texts[message_id] = text
            await running.lark.wait_accepted(message_id, timeout=120)
            accepted += 1
            if accepted >= total * at_fraction:
                reached.set()

    async with anyio.create_task_group() as tg:
        for index in range(chats):
            tg.start_soon(one_chat, index)
        if then is not None:
            await reached.wait()
            result = then()
            if hasattr(result, "__await__"):
                await result


async def test_kill_9_of_a_replica_loses_nothing_and_answers_nothing_twice(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, 3) as running:
        victim = running.replicas[1]
        killed: dict[str, Any] = {}

        async def kill() -> None:
            owners = await running.lease_owners()
            killed["partitions"] = {
                p for p, owner in owners.items() if running.owner_of(victim) in owner
            }
            killed["at"] = time.monotonic()
            victim.send_signal(signal.SIGKILL)

        await drive(running, chats=60, per_chat=10, at_fraction=1 / 3, then=kill)
        await running.wait_drained(timeout=120)
        await running.check_exactly_once_in_order()

        # The first answer in one of the dead replica's partitions after it died.
        # (A reply the dead replica sent just before it died may be recorded just after.)
        partitions, killed_at = killed["partitions"], killed["at"]
        adopted = [
            reply.at
            for reply in running.lark.replies
            if reply.at > killed_at + 1
            and running.store.keys.partition_of(str(reply.chat_id)) in partitions
        ]
        assert partitions and adopted
        adoption = min(adopted) - killed_at
        print(
            f"\nkill -9 of 1 of 3 replicas holding {len(partitions)} partitions: first adopted "
            f"answer {adoption:.1f} s after the kill (lease 10 s); 600 messages answered once "
            f"each, {running.lark.suppressed_duplicates} repeated posts absorbed by the uuid"
        )
        # The design's bound is lease + tick (11 s); a loaded two-core machine adds to it.
        assert adoption < 3 * 10


async def test_a_replica_frozen_past_its_lease_writes_nothing_stale(tmp_path: Path) -> None:
    lease = 3.0
    async with cluster(tmp_path, 3, env={"LARKBOT_STORE__LEASE_SECONDS": str(lease)}) as running:
        frozen = running.replicas[2]

        async def freeze() -> None:
            frozen.send_signal(signal.SIGSTOP)
            await anyio.sleep(lease * 3)
            frozen.send_signal(signal.SIGCONT)

        await drive(running, chats=60, per_chat=10, at_fraction=1 / 3, then=freeze)
        await running.wait_drained(timeout=120)
        # The woken replica is back with its share, so whatever it had in hand is settled.
        await running.wait_spread(3)
        await running.check_exactly_once_in_order()
        stale = len(frozen.log_lines("changed hands")) + len(frozen.log_lines("lost partition"))
        print(
            f"\nSIGSTOP of 1 of 3 replicas for {lease * 3:.0f} s (lease {lease:.0f} s): "
            f"{stale} stale items dropped by it on waking, "
            f"{running.lark.suppressed_duplicates} repeated posts absorbed by the uuid, "
            "no duplicate visible reply, no doubled history turn"
        )


async def test_redis_outage_under_load_refuses_then_answers_everything_once(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path, 3) as running:
        ports = [_ops_port(replica) for replica in running.replicas]
        during: list[list[int]] = []

        async def outage() -> None:
            await running.redis.stop()
            stopped = time.monotonic()
            async with httpx.AsyncClient(timeout=2) as http:
                await anyio.sleep(2)
                during.append([await _ready(http, port) for port in ports])
                # Past the pause: the replicas closed their long connections.
                with anyio.fail_after(8):
                    while running.lark.connections:  # noqa: ASYNC110
                        await anyio.sleep(0.1)
                during.append([await _ready(http, port) for port in ports])
            await anyio.sleep(max(0.0, 10 - (time.monotonic() - stopped)))
            await running.redis.start()

        await drive(running, chats=30, per_chat=10, at_fraction=1 / 3, then=outage)
        await running.wait_drained(timeout=120)
        await running.check_exactly_once_in_order()
        async with httpx.AsyncClient(timeout=2) as http:
            after = [await _ready(http, port) for port in ports]
        refused = [ack for ack in running.lark.acks if ack.code != 200]
        assert all(code == 503 for sample in during for code in sample), during
        assert after == [200, 200, 200]
        print(
            f"\nRedis stopped 10 s under load: {len(refused)} events refused and re-delivered, "
            f"all 300 messages answered once, /readyz 503 on every replica during the outage"
        )


async def test_one_users_limit_holds_across_replicas(tmp_path: Path) -> None:
    per_minute = 20
    env = {"LARKBOT_RATE_LIMITING__REQUESTS_PER_MINUTE": str(per_minute)}
    async with cluster(tmp_path, 3, env=env) as running:
        owners = await running.lease_owners()
        chats = _chats_spread_over_owners(running.store, owners, count=8)
        assert len({owners[running.store.keys.partition_of(c)] for c in chats}) == 3
        # 80 messages of one user within a minute, spread over chats of all three replicas.
        await drive(
            running,
            chats=len(chats),
            per_chat=10,
            sender=lambda _chat: "ou_the_same_user",
            chat_ids=chats,
        )
        await running.wait_drained(timeout=60)
    texts = {r.to_message_id: reply_text(r) for r in running.lark.replies}
    normal = [mid for mid in texts if texts[mid].startswith("LLM: ")]
    limited = [mid for mid in texts if not texts[mid].startswith("LLM: ")]
    assert running.total_sent == 80
    assert len(running.lark.replies) == len(texts) == 80
    assert len(normal) == per_minute
    assert len(limited) == 80 - per_minute
    assert all(re.search(rf"\b{per_minute}\b", texts[mid]) for mid in limited)
    print(
        f"\none user, 80 messages over 3 replicas: {len(normal)} answered, {len(limited)} limited"
    )


async def test_sigterm_hands_the_partitions_over_at_once(tmp_path: Path) -> None:
    async with cluster(tmp_path, 2) as running:
        leaving, staying = running.replicas
        stopped: dict[str, float] = {}

        async def terminate() -> None:
            leaving.send_signal(signal.SIGTERM)
            stopped["signal"] = time.monotonic()
            assert await leaving.wait(30) == 0
            stopped["exit"] = time.monotonic()
            # Released, not left to expire: taken well within one lease (10 s).
            owners = await running.wait_spread(1, timeout=5)
            stopped["taken"] = time.monotonic()
            assert all(running.owner_of(staying) in owner for owner in owners.values())

        await drive(running, chats=20, per_chat=10, at_fraction=1 / 2, then=terminate)
        await running.wait_drained(timeout=60)
        await running.check_exactly_once_in_order()
        print(
            f"\nSIGTERM: the replica left {stopped['exit'] - stopped['signal']:.1f} s after the "
            f"signal; all partitions held by the other "
            f"{stopped['taken'] - stopped['exit']:.1f} s later"
        )


def _chats_spread_over_owners(store: RedisStore, owners: dict[int, str], count: int) -> list[str]:
    """``count`` chat ids whose partitions belong to the owners in turn."""
    ring = sorted(set(owners.values()))
    picked: list[str] = []
    n = 0
    while len(picked) < count:
        chat = f"oc_limit_{n}"
        if owners[store.keys.partition_of(chat)] == ring[len(picked) % len(ring)]:
            picked.append(chat)
        n += 1
    return picked


def _ops_port(replica: LarkbotProcess) -> int:
    for line in replica.log_lines("ops port listening on"):
        return int(str(line["message"]).rsplit(":", 1)[1])
    raise AssertionError("the replica did not log its ops port")


async def _ready(http: httpx.AsyncClient, port: int) -> int:
    return (await http.get(f"http://127.0.0.1:{port}/readyz")).status_code


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
