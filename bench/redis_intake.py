"""Intake and the full message path on Redis: throughput, latency, Redis commands per message.

``python bench/redis_intake.py [--messages N] [--concurrency K] [--batch B] [--url URL]``

Without ``--url`` it starts its own ``redis-server`` (AOF on, ``appendfsync everysec``,
``noeviction``: the production settings) on a free port in a temporary directory. Three
runs, each on fresh keys:

- ``intake``: N messages over 100 chats, K calls in flight, one message per call;
- ``intake batched``: the same in calls of B messages (one round trip each);
- ``full path``: intake, then one :class:`PartitionOwnership` feeding every message and a
  fenced finish for each (two turns of history), i.e. what a replica does per message
  apart from the agent and the reply.

Redis commands per message come from ``INFO commandstats`` before and after each run:
"sent" counts the commands clients sent (EVALSHA, XREAD, ...; a batch sends one EVALSHA per
message in one round trip), "run" adds every command the Lua scripts ran inside Redis.
Figures only, nothing is asserted.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import statistics
import subprocess
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio

from larkbot.core.message import InboundMessage
from larkbot.store.redis import FinishChange, PartitionOwnership, RedisStore

__all__ = ["main"]

_CHATS = 100
# Commands a client sends itself; everything else in commandstats ran inside a script.
_CLIENT_COMMANDS = {
    "evalsha", "eval", "script", "xread", "ping", "info", "client", "hello", "select", "auth",
    "config",
}  # fmt: skip


def _message(n: int, run: str) -> InboundMessage:
    return InboundMessage(
        message_id=f"om_{run}_{n}",
        event_id=f"ev_{run}_{n}",
        chat_id=f"oc_bench_{n % _CHATS}",
        chat_type="p2p",
        message_type="text",
        text=f"message {n}",
        sender_open_id=f"ou_{n % _CHATS}",
        created_at=datetime.now(UTC),
    )


@asynccontextmanager
async def _local_redis() -> AsyncIterator[str]:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    with tempfile.TemporaryDirectory(prefix="larkbot-bench-redis-") as directory:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        arguments = [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", directory,
            "--appendonly", "yes", "--appendfsync", "everysec",
            "--maxmemory-policy", "noeviction", "--save", "",
        ]  # fmt: skip
        process = await anyio.open_process(
            arguments, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            url = f"redis://127.0.0.1:{port}/0"
            with anyio.fail_after(15):
                while True:
                    try:
                        async with RedisStore.open(url) as probe_store:
                            await probe_store.ping()
                        break
                    except Exception:  # still starting
                        await anyio.sleep(0.05)
            yield url
        finally:
            process.terminate()
            await process.wait()


async def _commandstats(store: RedisStore) -> dict[str, int]:
    stats = await store._client.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}


async def _measured(
    store: RedisStore, count: int, work: Callable[[], Awaitable[list[float]]]
) -> dict[str, Any]:
    before = await _commandstats(store)
    started = anyio.current_time()
    latencies = await work()
    seconds = anyio.current_time() - started
    after = await _commandstats(store)
    delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
    delta["info"] = delta.get("info", 0) - 1  # our own INFO
    sent = sum(c for name, c in delta.items() if name.split("|")[0] in _CLIENT_COMMANDS)
    total = sum(delta.values())
    ordered = sorted(latencies)
    return {
        "per_second": count / seconds,
        "p50_ms": 1000 * statistics.median(ordered) if ordered else float("nan"),
        "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))] if ordered else float("nan"),
        "sent": sent / count,
        "run": total / count,
        "top": sorted(((c, n) for n, c in delta.items() if c > 0), reverse=True)[:6],
    }


async def _in_flight(calls: Sequence[Callable[[], Awaitable[None]]], concurrency: int) -> None:
    limiter = anyio.Semaphore(concurrency)

    async def _one(call: Callable[[], Awaitable[None]]) -> None:
        async with limiter:
            await call()

    async with anyio.create_task_group() as tg:
        for call in calls:
            tg.start_soon(_one, call)


async def _intake(
    store: RedisStore, messages: list[InboundMessage], concurrency: int
) -> list[float]:
    latencies: list[float] = []

    def _call(message: InboundMessage) -> Callable[[], Awaitable[None]]:
        async def _run() -> None:
            started = anyio.current_time()
            await store.intake(message)
            latencies.append(anyio.current_time() - started)

        return _run

    await _in_flight([_call(m) for m in messages], concurrency)
    return latencies


async def _intake_batched(
    store: RedisStore, messages: list[InboundMessage], concurrency: int, batch: int
) -> list[float]:
    latencies: list[float] = []

    def _call(chunk: list[InboundMessage]) -> Callable[[], Awaitable[None]]:
        async def _run() -> None:
            started = anyio.current_time()
            await store.intake_many(chunk)
            latencies.extend([anyio.current_time() - started] * len(chunk))

        return _run

    chunks = [messages[i : i + batch] for i in range(0, len(messages), batch)]
    await _in_flight([_call(c) for c in chunks], max(1, concurrency // batch))
    return latencies


async def _full_path(
    store: RedisStore, messages: list[InboundMessage], concurrency: int
) -> list[float]:
    """Intake, feed and fenced finish; latency is intake start to finish done."""
    admitted: dict[str, float] = {}
    latencies: list[float] = []
    finished = anyio.Event()
    ownership = PartitionOwnership(store, owner="bench", buffer=256, batch=64)

    async def _consume() -> None:
        limiter = anyio.Semaphore(concurrency)

        async def _finish(item: Any) -> None:
            async with limiter:
                await ownership.finish(
                    item, FinishChange(user_text=item.message.text, answer_text="pong")
                )
            latencies.append(anyio.current_time() - admitted[item.message.message_id])
            if len(latencies) == len(messages):
                finished.set()

        async with anyio.create_task_group() as workers:
            async for item in ownership.items:
                workers.start_soon(_finish, item)

    def _call(message: InboundMessage) -> Callable[[], Awaitable[None]]:
        async def _run() -> None:
            admitted[message.message_id] = anyio.current_time()
            await store.intake(message)

        return _run

    async with anyio.create_task_group() as tg:
        await tg.start(ownership.run)
        with anyio.fail_after(30):
            # Ownership settles on its own ticks; nothing signals it.
            while len(ownership.owned) < store.keys.partitions:  # noqa: ASYNC110
                await anyio.sleep(0.05)
        tg.start_soon(_consume)
        await _in_flight([_call(m) for m in messages], concurrency)
        with anyio.fail_after(120):
            await finished.wait()
        await ownership.release_all()
        tg.cancel_scope.cancel()
    return latencies


def _print(name: str, figures: dict[str, Any]) -> None:
    print(
        f"{name:<16} {figures['per_second']:>9.0f}/s  p50 {figures['p50_ms']:6.2f} ms  "
        f"p99 {figures['p99_ms']:7.2f} ms  commands/msg sent {figures['sent']:5.2f}, "
        f"run {figures['run']:5.2f}"
    )
    print(" " * 17 + "top: " + ", ".join(f"{name} {calls}" for calls, name in figures["top"]))


async def _run(url: str | None, count: int, concurrency: int, batch: int) -> None:
    async with _local_redis() if url is None else _given(url) as target:
        runs: list[tuple[str, Callable[[RedisStore, list[InboundMessage]], Awaitable[Any]]]] = [
            ("intake", lambda store, ms: _intake(store, ms, concurrency)),
            ("intake batched", lambda store, ms: _intake_batched(store, ms, concurrency, batch)),
            ("full path", lambda store, ms: _full_path(store, ms, concurrency)),
        ]
        for number, (name, work) in enumerate(runs):
            # Each run under a prefix of its own: the full path must not meet the messages
            # the intake runs left queued.
            async with RedisStore.open(
                target, prefix=f"bench{number}", max_connections=concurrency + 8
            ) as store:
                if number == 0:
                    info = await store.info()
                    print(
                        f"Redis {info.version} ({info.server}), AOF "
                        f"{'on' if info.aof_enabled else 'off'} ({info.appendfsync}), {count} "
                        f"messages over {_CHATS} chats, {concurrency} in flight, batches of "
                        f"{batch}"
                    )
                    await _intake(store, [_message(n, "warm") for n in range(200)], concurrency)
                messages = [_message(n, name.replace(" ", "_")) for n in range(count)]
                figures = await _measured(store, count, lambda w=work, m=messages: w(store, m))
                _print(name, figures)


@asynccontextmanager
async def _given(url: str) -> AsyncIterator[str]:
    yield url


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the options and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--url", help="an existing Redis (keys under bench0..2: are written)")
    options = parser.parse_args(argv)
    anyio.run(_run, options.url, options.messages, options.concurrency, options.batch)


if __name__ == "__main__":
    main()
