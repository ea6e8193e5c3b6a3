"""Start each bot as a process of its own against a stand-in, and watch it become ready."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import anyio
import psutil
from anyio.abc import Process

from larkbot.testing import LarkStandIn

__all__ = ["BotProcess", "bot_env", "larkbot_bot", "metric_value", "sdk_bot"]

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
_READY_TIMEOUT = 30.0
_POLL_SECONDS = 0.01
# Settings a developer's shell may carry that would change what is measured.
_STRIPPED_PREFIXES = (
    "LARKBOT_",
    "APP_",
    "LARK_",
    "LLM_",
    "OPENAI_",
    "SENTRY_",
    "LOG_",
    "PORT",
    "HOST",
)


@dataclass
class BotProcess:
    """A running bot: its process, when it was spawned, and how long it took to be ready."""

    name: str
    process: Process
    spawned_at: float
    ready_seconds: float = 0.0
    ops_port: int | None = None

    @property
    def pid(self) -> int:
        """The operating-system id of the bot's process."""
        return self.process.pid

    def rss_bytes(self) -> int:
        """Resident set size of the bot's process now."""
        return int(psutil.Process(self.pid).memory_info().rss)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the bot's process has used so far."""
        times = psutil.Process(self.pid).cpu_times()
        return float(times.user + times.system)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def bot_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment of a bot process: ours without larkbot settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_STRIPPED_PREFIXES)}
    env["PYTHONPATH"] = str(REPO_DIR)
    env.update(extra)
    return env


async def _stop(process: Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        with anyio.move_on_after(10):
            await process.wait()
    if process.returncode is None:
        process.kill()
        await process.wait()


async def _larkbot_ready(port: int, process: Process) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1.0)) as http:
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"larkbot exited with {process.returncode} before ready")
            try:
                async with http.get(f"http://127.0.0.1:{port}/readyz") as response:
                    if response.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await anyio.sleep(_POLL_SECONDS)


@asynccontextmanager
async def larkbot_bot(
    lark: LarkStandIn, workdir: Path, env: Mapping[str, str] | None = None
) -> AsyncIterator[BotProcess]:
    """Run ``python -m larkbot run`` against ``lark`` until the block ends.

    The SQLite store lives under ``workdir``; the per-user request limit is off, since
    it would throttle any load test. Yields once ``/readyz`` answers 200.
    """
    port = _free_port()
    state_dir = workdir / f"state-{port}"
    variables = {
        "APP_ID": lark.app_id,
        "APP_SECRET": lark.app_secret,
        "LARK_DOMAIN": lark.url,
        "PORT": str(port),
        "LARKBOT_STATE_DIR": str(state_dir),
        "LOG_LEVEL": "INFO",  # the default: one JSON line per reply
        "LOG_FORMAT": "json",
        "LARKBOT_RATE_LIMITING__ENABLED": "false",
        **(env or {}),
    }
    async with _spawned(
        "larkbot",
        [sys.executable, "-m", "larkbot", "run"],
        variables,
        workdir,
        f"larkbot-{port}.log",
        lambda process: _larkbot_ready(port, process),
        ops_port=port,
    ) as bot:
        yield bot


@asynccontextmanager
async def sdk_bot(
    lark: LarkStandIn, workdir: Path, delay: float = 0.0
) -> AsyncIterator[BotProcess]:
    """Run ``bench/sdk_bot.py`` against ``lark``; yields once the stand-in sees it connected."""
    connected_before = lark.handshakes

    async def connected(process: Process) -> None:
        while lark.handshakes <= connected_before or lark.connections == 0:
            if process.returncode is not None:
                raise RuntimeError(f"the SDK bot exited with {process.returncode}")
            await anyio.sleep(_POLL_SECONDS)

    command = [
        sys.executable,
        str(BENCH_DIR / "sdk_bot.py"),
        lark.url,
        lark.app_id,
        lark.app_secret,
        str(delay),
    ]
    log_name = f"sdk-{time.monotonic_ns()}.log"
    async with _spawned("sdk", command, {}, workdir, log_name, connected) as bot:
        yield bot


@asynccontextmanager
async def _spawned(
    name: str,
    command: list[str],
    variables: Mapping[str, str],
    workdir: Path,
    log_name: str,
    ready: Callable[[Process], Awaitable[None]],
    *,
    ops_port: int | None = None,
) -> AsyncIterator[BotProcess]:
    """Run ``command`` in ``workdir``, logging to ``log_name`` there; yield once ``ready``.

    The time to ready is recorded on the yielded bot; the process is stopped (SIGTERM, then
    SIGKILL) when the block ends.
    """
    log = (workdir / log_name).open("wb")
    spawned_at = time.perf_counter()
    process = await anyio.open_process(
        command, env=bot_env(variables), cwd=workdir, stdout=log, stderr=subprocess.STDOUT
    )
    bot = BotProcess(name, process, spawned_at, ops_port=ops_port)
    try:
        with anyio.fail_after(_READY_TIMEOUT):
            await ready(process)
        bot.ready_seconds = time.perf_counter() - spawned_at
        yield bot
    finally:
        with anyio.CancelScope(shield=True):
            await _stop(process)
            log.close()


async def metric_value(bot: BotProcess, name: str) -> float | None:
    """Read one unlabelled sample from the bot's ``/metrics``; ``None`` when absent."""
    if bot.ops_port is None:
        return None
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5.0)) as http,
        http.get(f"http://127.0.0.1:{bot.ops_port}/metrics") as response,
    ):
        text = await response.text()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None
