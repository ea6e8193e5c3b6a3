"""A real ``redis-server`` for tests: own port, own directory, AOF on, as production runs it.

``redis_server(tmp_path)`` starts one on a free 127.0.0.1 port and stops it on exit. The
same server (same directory, port and AOF) can be stopped and started again, killed, or
frozen with SIGSTOP, for outage drills. ``tls=True`` serves ``rediss://`` only, with a
certificate from a throwaway CA (trustme). Tests that need one are marked ``requires_redis``
and skip, saying why, only when no ``redis-server`` binary can be found.
"""

from __future__ import annotations

import shutil
import signal
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import pytest
import trustme
from anyio.abc import Process

from larkbot.store.redis import PartitionOwnership, RedisStore, WorkItem

__all__ = [
    "REDIS_SERVER",
    "RedisServer",
    "chat_owned_by",
    "opened",
    "redis_server",
    "requires_redis",
    "take",
]

REDIS_SERVER = shutil.which("redis-server") or (
    "/usr/bin/redis-server" if Path("/usr/bin/redis-server").exists() else None
)

requires_redis = pytest.mark.skipif(
    REDIS_SERVER is None,
    reason="redis-server is not installed (apt-get install redis-server): the Redis store "
    "tests run against a real one",
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(eq=False)
class RedisServer:
    """One redis-server process with its config, data directory and port."""

    directory: Path
    port: int
    password: str | None = None
    tls: bool = False
    _process: Process | None = field(default=None, init=False, repr=False)
    _client_tls: ssl.SSLContext | None = field(default=None, init=False, repr=False)

    @property
    def ca_file(self) -> Path:
        """The CA that signed the server's certificate (TLS only)."""
        return self.directory / "ca.pem"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0``, or ``rediss://...?ssl_ca_certs=<ca>``; no password."""
        if self.tls:
            return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca_file}"
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    async def start(self, ready_timeout: float = 15.0) -> None:
        """Start (or start again) and wait until it answers PING (AOF loaded)."""
        assert REDIS_SERVER is not None
        config = anyio.Path(self.directory / "redis.conf")
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.directory}",
            f"logfile {self.directory / 'redis.log'}",
            "daemonize no",
            "appendonly yes",
            "appendfsync everysec",
            "maxmemory-policy noeviction",
            'save ""',
        ]
        if self.password:
            lines.append(f"requirepass {self.password}")
        if self.tls:
            lines = [line for line in lines if not line.startswith("port ")]
            lines += [
                "port 0",
                f"tls-port {self.port}",
                f"tls-cert-file {self.directory / 'server.pem'}",
                f"tls-key-file {self.directory / 'server.key'}",
                f"tls-ca-cert-file {self.ca_file}",
                "tls-auth-clients no",
            ]
            self._write_certificates()
        await config.write_text("\n".join(lines) + "\n")
        self._process = await anyio.open_process(
            [REDIS_SERVER, str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        with anyio.fail_after(ready_timeout):
            while not await self._answers():
                if self._process.returncode is not None:
                    log = await anyio.Path(self.directory / "redis.log").read_text()
                    raise RuntimeError(f"redis-server exited at start:\n{log[-2000:]}")
                await anyio.sleep(0.02)

    async def stop(self) -> None:
        """SIGTERM: Redis flushes its AOF and exits (a clean shutdown)."""
        await self._end(signal.SIGTERM)

    async def kill(self) -> None:
        """SIGKILL: what a crash or the OOM killer does."""
        await self._end(signal.SIGKILL)

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its sockets but answers nothing."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after :meth:`freeze`."""
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    async def _end(self, signum: int) -> None:
        process = self._process
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGCONT)
        process.send_signal(signum)
        with anyio.fail_after(15), anyio.CancelScope(shield=True):
            await process.wait()
        await process.aclose()

    def _write_certificates(self) -> None:
        if self._client_tls is not None:
            return
        authority = trustme.CA()
        certificate = authority.issue_cert("127.0.0.1", "localhost")
        authority.cert_pem.write_to_path(str(self.ca_file))
        certificate.cert_chain_pems[0].write_to_path(str(self.directory / "server.pem"))
        certificate.private_key_pem.write_to_path(str(self.directory / "server.key"))
        self._client_tls = ssl.create_default_context()
        authority.configure_trust(self._client_tls)

    async def _answers(self) -> bool:
        tls = {"ssl_context": self._client_tls, "tls_standard_compatible": False}
        try:
            async with await anyio.connect_tcp(
                "127.0.0.1", self.port, **(tls if self.tls else {})
            ) as stream:
                await stream.send(b"PING\r\n")
                with anyio.fail_after(1):
                    reply = await stream.receive()
        except (OSError, TimeoutError, anyio.EndOfStream, anyio.BrokenResourceError):
            return False
        return reply.startswith((b"+PONG", b"-NOAUTH"))


@asynccontextmanager
async def opened(server: RedisServer, **options: Any) -> AsyncIterator[RedisStore]:
    """A store on ``server``; calls may take 5-10 s unless a test bounds them itself.

    A call timed out on a busy machine loses its reply, and a read read again counts as a
    delivery: generous bounds keep delivery counts exact where tests assert them.
    """
    options.setdefault("command_timeout", 10.0)
    options.setdefault("intake_timeout", 5.0)
    async with RedisStore.open(server.url, password=server.password, **options) as store:
        yield store


async def take(ownership: PartitionOwnership, count: int, within: float = 15) -> list[WorkItem]:
    """The next ``count`` items of ``ownership``'s feed, within ``within`` seconds."""
    items: list[WorkItem] = []
    with anyio.fail_after(within):
        async for item in ownership.items:
            items.append(item)
            if len(items) == count:
                break
    return items


@asynccontextmanager
async def redis_server(
    directory: Path, *, password: str | None = None, tls: bool = False
) -> AsyncIterator[RedisServer]:
    """A started :class:`RedisServer` in ``directory`` (created), stopped on exit."""
    await anyio.Path(directory).mkdir(parents=True, exist_ok=True)
    server = RedisServer(directory, _free_port(), password, tls)
    await server.start()
    try:
        yield server
    finally:
        with anyio.CancelScope(shield=True):
            await server.kill()


async def chat_owned_by(
    store: RedisStore,
    owner: str,
    *,
    replicas: int = 2,
    timeout: float = 30.0,  # noqa: ASYNC109
) -> str:
    """A chat id in a partition whose lease ``owner`` holds (a part of an owner id).

    Waits until every partition is held and ``replicas`` owners share them, so the choice
    holds while the replicas run.
    """
    held: list[str] = []
    with anyio.fail_after(timeout):
        while True:
            leases = await store._client.mget(
                [store.keys.lease(p) for p in range(store.keys.partitions)]
            )
            held = [v.decode() if isinstance(v, bytes) else str(v or "") for v in leases]
            if all(held) and len({h.rpartition("|")[0] for h in held}) == replicas:
                break
            await anyio.sleep(0.2)
    for n in range(10_000):
        chat_id = f"oc_owned_{n}"
        if owner in held[store.keys.partition_of(chat_id)]:
            return chat_id
    raise AssertionError(f"no partition is held by {owner}")
