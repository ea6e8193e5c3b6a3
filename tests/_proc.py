"""Running ``larkbot`` as a real subprocess: ``larkbot run`` against the local Lark, and more."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import anyio
import httpx
import pytest
from anyio.abc import ByteReceiveStream, Process
from anyio.streams.text import TextReceiveStream
from prometheus_client.parser import text_string_to_metric_families

from larkbot.testing import LarkStandIn, ReplyRecord

__all__ = [
    "LarkbotProcess",
    "larkbot_process",
    "llm_env",
    "needs_llm",
    "openai_standin_available",
    "reply_text",
    "run_larkbot",
    "slow_llm",
    "spawned",
]

_REPO = Path(__file__).resolve().parent.parent
_OPENAI_STANDIN = "larkbot.testing.openai_standin"
_LISTENING = "ops port listening on "


def openai_standin_available() -> bool:
    """Whether the local OpenAI-compatible stand-in can be imported."""
    return importlib.util.find_spec(_OPENAI_STANDIN) is not None


needs_llm = pytest.mark.skipif(
    not openai_standin_available(), reason="the local OpenAI stand-in is not available"
)


def slow_llm(delay: float) -> Any:
    """The local OpenAI stand-in answering ``LLM: <text>`` after ``delay`` seconds."""
    module = importlib.import_module(_OPENAI_STANDIN)
    return module.OpenAIStandIn(api_key="sk-test", delay=delay)


def llm_env(llm: Any) -> dict[str, str]:
    """Environment that makes ``larkbot run`` think with the LLM brain at ``llm``."""
    return {"OPENAI_API_KEY": "sk-test", "OPENAI_BASE_URL": llm.base_url, "LLM_MODEL": "test-model"}


def reply_text(reply: ReplyRecord) -> str:
    """Everything a reply says, whatever its message type (text, post or card)."""
    return reply.text or json.dumps(reply.content, ensure_ascii=False)


async def run_larkbot(
    *args: str,
    env: Mapping[str, str],
    stdin: bytes = b"",
    timeout: float = 60.0,  # noqa: ASYNC109
) -> tuple[int, str, str]:
    """Run ``python -m larkbot *args`` to its end; return its status, stdout and stderr.

    The environment is ``env`` plus ``PATH`` only (``HOME`` is ``/nonexistent`` unless
    ``env`` names one), so nothing of the test runner's own environment leaks in.
    ``timeout`` only guards against a hang.
    """
    full = {"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent", **env}
    # Bounded, so a command that hangs fails the test instead of hanging the suite.
    with anyio.fail_after(timeout):
        result = await anyio.run_process(
            [sys.executable, "-m", "larkbot", *args], input=stdin, env=full, check=False
        )
    return result.returncode, result.stdout.decode(), result.stderr.decode()


class LarkbotProcess:
    """A running ``larkbot run``: its process, and its output lines as they arrive.

    ``raw`` holds every line of stdout and stderr; ``lines`` those that are JSON objects
    (the log lines with ``LOG_FORMAT=json``).
    """

    def __init__(self, process: Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self.started_at = time.monotonic()
        self.port: int | None = None

    @property
    def url(self) -> str:
        """Base URL of its HTTP port (``/healthz``, ``/readyz``, ``/metrics``, the webhook)."""
        if self.port is None:
            raise RuntimeError("the process has not logged its HTTP port yet")
        return f"http://127.0.0.1:{self.port}"

    async def metric(self, name: str, **labels: str) -> float:
        """Read one sample from its ``/metrics``: the sum over series matching ``labels``.

        ``name`` is a sample's name (``..._total``, ``..._sum``, ``..._count``); 0 when no
        series matches.
        """
        async with httpx.AsyncClient(base_url=self.url, timeout=5) as http:
            response = await http.get("/metrics")
        response.raise_for_status()
        return sum(
            sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
            if sample.name == name
            and all(sample.labels.get(key) == value for key, value in labels.items())
        )

    def send_signal(self, signum: int) -> None:
        """Send ``signum`` to the process."""
        self.process.send_signal(signum)

    async def wait(self, timeout: float) -> int:  # noqa: ASYNC109
        """Wait for the process to exit; return its status (``-N`` for signal ``N``)."""
        with anyio.fail_after(timeout):
            return await self.process.wait()

    def log_lines(self, text: str) -> list[dict[str, Any]]:
        """The JSON log lines whose message contains ``text``."""
        return [line for line in self.lines if text in str(line.get("message", ""))]

    async def _drain(self, stream: ByteReceiveStream) -> None:
        # Read all of it as it comes, so the pipe never fills and blocks the daemon.
        buffer = ""
        async for chunk in TextReceiveStream(stream):
            buffer += chunk
            *complete, buffer = buffer.split("\n")
            for line in complete:
                self._keep(line)
        if buffer:
            self._keep(buffer)

    def _keep(self, line: str) -> None:
        self.raw.append(line)
        try:
            parsed = json.loads(line)
        except ValueError:
            return
        if isinstance(parsed, dict):
            self.lines.append(parsed)
            message = str(parsed.get("message", ""))
            if parsed.get("logger") == "larkbot.ops" and message.startswith(_LISTENING):
                self.port = int(message.rpartition(":")[2])

    async def _wait_ready(self) -> None:
        # /readyz turns 200 once the bot identity is known and the event source runs.
        while self.port is None:
            await self._still_running()
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:
            while True:
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass  # tried again, like a 503, until ready_timeout
                await self._still_running()

    async def _still_running(self) -> None:
        if self.process.returncode is not None:
            raise RuntimeError(
                f"larkbot run exited with {self.process.returncode}: " + "\n".join(self.raw[-20:])
            )
        await anyio.sleep(0.02)


@asynccontextmanager
async def spawned(
    command: Sequence[str],
    env: Mapping[str, str],
    cwd: Path,
    *,
    stdin: int = subprocess.DEVNULL,
    stdout: int = subprocess.PIPE,
    stderr: int = subprocess.PIPE,
) -> AsyncIterator[Process]:
    """``command`` started in ``cwd`` with only ``env``; on exit, killed if still running.

    Its exit is awaited either way, shielded, so a failing or cancelled test leaves no
    process behind.
    """
    process = await anyio.open_process(
        command, env=env, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr
    )
    async with process:
        try:
            yield process
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                await process.wait()


@asynccontextmanager
async def larkbot_process(
    lark: LarkStandIn,
    state_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    ready_timeout: float = 60.0,
    ready_when: Literal["connected", "readyz"] = "connected",
) -> AsyncIterator[LarkbotProcess]:
    """Start ``python -m larkbot run`` against ``lark``; wait until it is ready.

    Readiness is observed, never guessed with a sleep: with ``ready_when="connected"``
    from the stand-in (one more long connection open), with ``"readyz"`` (webhook mode,
    which opens no connection) from the process's own ``/readyz`` on the port it logs.
    ``ready_timeout`` only guards against a hang: a start-up's imports can take many
    seconds on a loaded machine. On exit a process still running is killed, and its exit
    awaited.
    """
    connections = lark.connections
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", str(state_dir)),
        "APP_ID": lark.app_id,
        "APP_SECRET": lark.app_secret,
        "LARK_DOMAIN": lark.url,
        "PORT": "0",
        "LARKBOT_STATE_DIR": str(state_dir),
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }
    command = [sys.executable, "-m", "larkbot", "run"]
    async with (
        spawned(command, full_env, state_dir) as process,
        anyio.create_task_group() as tg,
    ):
        running = LarkbotProcess(process)
        assert process.stdout is not None and process.stderr is not None
        tg.start_soon(running._drain, process.stdout)
        tg.start_soon(running._drain, process.stderr)
        try:
            with anyio.fail_after(ready_timeout):
                if ready_when == "readyz":
                    await running._wait_ready()
                while ready_when == "connected" and lark.connections <= connections:
                    await running._still_running()
            yield running
        finally:
            # Killed here rather than by ``spawned``, so its output is still read to the end.
            if process.returncode is None:
                process.kill()
