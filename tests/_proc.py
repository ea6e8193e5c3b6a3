"""Running ``larkbot`` as a real subprocess: ``larkbot run`` against the local Lark, and more."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import ByteReceiveStream, Process
from anyio.streams.text import TextReceiveStream

from larkbot.testing import LarkStandIn, ReplyRecord

__all__ = [
    "LarkbotProcess",
    "larkbot_process",
    "llm_env",
    "openai_standin_available",
    "reply_text",
    "run_larkbot",
    "slow_llm",
]

_REPO = Path(__file__).resolve().parent.parent
_OPENAI_STANDIN = "larkbot.testing.openai_standin"


def openai_standin_available() -> bool:
    """Whether the local OpenAI-compatible stand-in can be imported."""
    return importlib.util.find_spec(_OPENAI_STANDIN) is not None


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
    *args: str, env: Mapping[str, str], stdin: bytes = b""
) -> tuple[int, str, str]:
    """Run ``python -m larkbot *args`` to its end; return its status, stdout and stderr.

    The environment is ``env`` plus ``PATH`` only (``HOME`` is ``/nonexistent`` unless
    ``env`` names one), so nothing of the test runner's own environment leaks in.
    """
    full = {"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent", **env}
    # Bounded, so a command that hangs fails the test instead of hanging the suite.
    with anyio.fail_after(60):
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


@asynccontextmanager
async def larkbot_process(
    lark: LarkStandIn,
    state_dir: Path,
    env: Mapping[str, str] | None = None,
    *,
    ready_timeout: float = 60.0,
) -> AsyncIterator[LarkbotProcess]:
    """Start ``python -m larkbot run`` against ``lark``; wait until it holds a connection.

    Readiness is read from the stand-in (one more long connection open), not guessed with
    a sleep. ``ready_timeout`` only guards against a hang: a start-up's imports can take
    many seconds on a loaded machine. On exit a process still running is killed, and its
    exit awaited.
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
    process = await anyio.open_process(
        [sys.executable, "-m", "larkbot", "run"],
        env=full_env,
        cwd=state_dir,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    running = LarkbotProcess(process)
    async with process, anyio.create_task_group() as tg:
        assert process.stdout is not None and process.stderr is not None
        tg.start_soon(running._drain, process.stdout)
        tg.start_soon(running._drain, process.stderr)
        try:
            with anyio.fail_after(ready_timeout):
                while lark.connections <= connections:
                    if process.returncode is not None:
                        raise RuntimeError(
                            f"larkbot run exited with {process.returncode}: "
                            + "\n".join(running.raw[-20:])
                        )
                    await anyio.sleep(0.02)
            yield running
        finally:
            with anyio.CancelScope(shield=True):
                if process.returncode is None:
                    process.kill()
                await process.wait()
