"""A stop is honoured at every stage of start-up (regression: SIGTERM was ignored while
the daemon retried Lark during start-up, so systemd waited for its kill timeout)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from anyio.streams.text import TextReceiveStream

from tests._proc import spawned

pytestmark = pytest.mark.anyio


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_stop_during_start_up_retries_exits_at_once(tmp_path: Path, signum: int) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "APP_ID": "cli_startup_test",
        "APP_SECRET": "s3cr3t-value-for-start-up-test",
        # Nothing listens there: identification retries until stopped.
        "LARK_DOMAIN": f"http://127.0.0.1:{_closed_port()}",
        "PORT": "0",
        "LARKBOT_STATE_DIR": str(tmp_path / "state"),
        "LOG_FORMAT": "json",
        "PYTHONUNBUFFERED": "1",
    }
    lines: list[dict[str, object]] = []
    command = [sys.executable, "-m", "larkbot", "run"]
    async with spawned(command, env, tmp_path, stdout=subprocess.DEVNULL) as process:
        assert process.stderr is not None
        buffer = ""

        async def read_until(predicate: object) -> None:
            nonlocal buffer
            async for chunk in TextReceiveStream(process.stderr):  # type: ignore[arg-type]
                buffer += chunk
                *complete, buffer = buffer.split("\n")
                for line in complete:
                    try:
                        lines.append(json.loads(line))
                    except ValueError:
                        continue
                if predicate():  # type: ignore[operator]
                    return

        with anyio.fail_after(30):
            await read_until(
                lambda: any("not known yet" in str(line.get("message")) for line in lines)
            )
        sent = time.monotonic()
        process.send_signal(signum)
        with anyio.fail_after(10):
            await read_until(lambda: False)
            code = await process.wait()
        elapsed = time.monotonic() - sent
    print(f"exit {code} {elapsed:.2f} s after the signal")
    assert code == 0
    assert elapsed < 2.0
    assert any("stop requested while starting" in str(line.get("message")) for line in lines)
