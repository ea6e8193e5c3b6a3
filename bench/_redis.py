"""A redis-server for the benchmark, set up as production runs it, and its command counts."""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
from redis.asyncio import Redis
from redis.exceptions import RedisError

__all__ = ["REDIS_SERVER", "BenchRedis", "bench_redis"]

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
)
_CONFIG = Path(__file__).resolve().parent.parent / "config" / "redis.conf"


@dataclass
class BenchRedis:
    """A running redis-server: its URL and a client for the benchmark's own questions."""

    url: str
    client: Redis

    async def flush(self) -> None:
        """Drop every key (a fresh deployment for the next run)."""
        await self.client.flushall()

    async def cpu_seconds(self) -> float:
        """CPU time (user + system) redis-server has used so far."""
        cpu = await self.client.info("cpu")
        return float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])

    async def command_calls(self) -> dict[str, int]:
        """``INFO commandstats``: calls per command so far."""
        stats = await self.client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(value["calls"]) for name, value in stats.items()}

    @staticmethod
    def per_message(
        before: dict[str, int], after: dict[str, int], messages: int
    ) -> dict[str, object]:
        """Redis work per message between two :meth:`command_calls`.

        ``commands``: every command Redis ran (those inside Lua scripts included);
        ``scripts``: script calls (EVALSHA), each one round trip; ``top``: the six commands
        run most, per message. Heartbeats, lease renewals and backlog polls of the run
        count too: they are part of what replicas cost.
        """
        delta = {name: after.get(name, 0) - before.get(name, 0) for name in after}
        delta["info"] = delta.get("info", 0) - 1  # the second INFO itself
        per = max(messages, 1)
        top = sorted(((count, name) for name, count in delta.items() if count > 0), reverse=True)
        return {
            "commands": sum(delta.values()) / per,
            "scripts": (delta.get("evalsha", 0) + delta.get("eval", 0)) / per,
            "top": [f"{name} {count / per:.1f}" for count, name in top[:6]],
        }


@asynccontextmanager
async def bench_redis(directory: Path) -> AsyncIterator[BenchRedis]:
    """Start redis-server on a free port with ``config/redis.conf`` (AOF everysec,
    noeviction), its files in ``directory``; stop it on exit."""
    assert REDIS_SERVER is not None
    await anyio.Path(directory).mkdir(parents=True, exist_ok=True)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = await anyio.open_process(
        [
            REDIS_SERVER,
            str(_CONFIG),
            *("--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = Redis.from_url(url)
    try:
        with anyio.fail_after(15):
            while True:
                try:
                    await client.ping()
                    break
                except (OSError, RedisError):  # not listening yet, or loading its AOF
                    await anyio.sleep(0.05)
        yield BenchRedis(url, client)
    finally:
        with anyio.CancelScope(shield=True):
            await client.aclose()
            process.terminate()
            await process.wait()
