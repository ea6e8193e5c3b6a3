"""The interactive commands as people use them: the console under a terminal, and
``larkbot standin`` driving a real ``larkbot run``, each a real process."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import anyio
import pytest
from anyio.abc import ByteReceiveStream, Process

from tests._proc import run_larkbot, spawned

pytestmark = pytest.mark.anyio

# The child becomes a session leader whose controlling terminal is the pty, so the ^C typed
# into the terminal reaches it as SIGINT, as it does in a shell.
_UNDER_A_TERMINAL = (
    "import fcntl, os, sys, termios; os.setsid(); fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, '-m', 'larkbot', *sys.argv[1:]])"
)


def _env(**extra: str) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": "/nonexistent",
        "PYTHONUNBUFFERED": "1",
        **extra,
    }


class _Terminal:
    """The master side of a pseudo-terminal: what the program wrote, and typing into it."""

    def __init__(self, master: int) -> None:
        self.master = master
        self.output = b""

    async def read_until(self, wanted: bytes, timeout: float) -> None:  # noqa: ASYNC109
        with anyio.fail_after(timeout):
            while wanted not in self.output:
                if not await self._read():
                    raise AssertionError(f"the terminal closed before {wanted!r}: {self.output!r}")

    async def read_to_end(self, timeout: float) -> None:  # noqa: ASYNC109
        with anyio.move_on_after(timeout):
            while await self._read():
                pass

    async def _read(self) -> bool:
        await anyio.wait_readable(self.master)
        try:
            chunk = os.read(self.master, 65536)
        except OSError:  # EIO: every process holding the terminal is gone
            return False
        self.output += chunk
        return bool(chunk)


async def test_ctrl_c_at_the_console_prompt_ends_it_at_once() -> None:
    master, slave = os.openpty()
    try:
        process = await anyio.open_process(
            [sys.executable, "-c", _UNDER_A_TERMINAL, "console"],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=_env(TERM="xterm"),
        )
    finally:
        os.close(slave)
    terminal = _Terminal(master)
    try:
        async with process:
            try:
                await terminal.read_until("you ›".encode(), timeout=60)
                typed_at = time.monotonic()
                os.write(master, b"\x03")  # Ctrl-C, with no Enter after it
                with anyio.move_on_after(10):
                    await process.wait()
                took = time.monotonic() - typed_at
                await terminal.read_to_end(timeout=1)
            finally:
                if process.returncode is None:
                    process.kill()
                    await process.wait()
    finally:
        os.close(master)
    status = process.returncode
    text = terminal.output.decode(errors="replace")
    assert status == 0, text
    # At once: the read of the prompt does not hold the exit until Enter, as it used to.
    assert took < 5, f"{took:.1f} s"
    assert "Traceback" not in text and "KeyboardInterrupt" not in text


class _Lines:
    """The lines a process writes on one stream, as they arrive."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    async def drain(self, stream: ByteReceiveStream) -> None:
        buffer = b""
        async for chunk in stream:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            self.lines.extend(line.decode() for line in complete)

    async def wait_for(self, test: object, timeout: float) -> str:  # noqa: ASYNC109
        with anyio.fail_after(timeout):
            while True:
                for line in self.lines:
                    if test(line):  # type: ignore[operator]
                        return line
                await anyio.sleep(0.02)


def _started(
    args: list[str], env: dict[str, str], cwd: Path
) -> AbstractAsyncContextManager[Process]:
    """``larkbot ARGS``, killed on the way out if still running (a failing test ends)."""
    return spawned([sys.executable, "-m", "larkbot", *args], env, cwd, stdin=subprocess.PIPE)


async def test_standin_lets_larkbot_run_be_tried_end_to_end(tmp_path: Path) -> None:
    out, notes = _Lines(), _Lines()
    async with (
        _started(["standin", "--port", "0"], _env(), tmp_path) as standin,
        anyio.create_task_group() as tg,
    ):
        assert standin.stdin and standin.stdout and standin.stderr
        tg.start_soon(out.drain, standin.stdout)
        tg.start_soon(notes.drain, standin.stderr)
        await out.wait_for(lambda _: len(out.lines) >= 3, timeout=30)
        exports = dict(shlex.split(line)[1].split("=", 1) for line in out.lines[:3])
        assert set(exports) == {"LARK_DOMAIN", "APP_ID", "APP_SECRET"}
        assert all(line.startswith("export ") for line in out.lines[:3])

        env = _env(**exports, PORT="0", LARKBOT_STATE_DIR=str(tmp_path / "state"))
        code, doctor, _ = await run_larkbot("doctor", "--json", env=env)
        report = json.loads(doctor)
        assert code == 0, report
        statuses = {row["name"]: row["status"] for row in report["checks"]}
        assert statuses["permissions"] == statuses["long connection"] == "ok"

        logs = _Lines()
        async with _started(["run"], {**env, "LOG_FORMAT": "json"}, tmp_path) as run:
            assert run.stderr is not None
            tg.start_soon(logs.drain, run.stderr)
            await notes.wait_for(lambda line: "A bot is connected" in line, timeout=30)
            await standin.stdin.send(b"ping\n")
            reply = await out.wait_for(lambda line: line.startswith("bot › "), timeout=30)
            assert reply.startswith("bot › pong")

            run.send_signal(signal.SIGTERM)
            with anyio.fail_after(30):
                assert await run.wait() == 0
        standin.send_signal(signal.SIGINT)
        with anyio.fail_after(10):
            assert await standin.wait() == 0
        tg.cancel_scope.cancel()
    first = json.loads(logs.lines[0])
    assert first["message"].startswith("larkbot ") and exports["APP_ID"] in first["message"]
    assert exports["APP_SECRET"] not in "\n".join(logs.lines + out.lines[3:] + notes.lines)
