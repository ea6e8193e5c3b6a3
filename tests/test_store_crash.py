"""A real crash: a child process using the SQLite store is killed with SIGKILL.

What the child had admitted (the moment before its ack) must come back to the next
process as duplicates, and what it had not answered must be resumable at once.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from larkbot.core.message import InboundMessage
from larkbot.store import open_store
from tests._factories import inbound

_REPO = Path(__file__).resolve().parent.parent

_CHILD = """
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

from larkbot.core.message import InboundMessage
from larkbot.store import open_store


def message(n):
    return InboundMessage(
        message_id=f"om_{n}", event_id=f"ev_{n}", chat_id="oc_chat", chat_type="p2p",
        message_type="text", text=f"message {n}", sender_open_id="ou_user",
        created_at=datetime.now(UTC) - timedelta(seconds=1000 - n),
    )


async def main(state_dir, mode):
    async with open_store("sqlite", Path(state_dir)) as store:
        if mode == "batch":
            for n in range(50):
                assert await store.admit(message(n))
            for n in range(20):
                await store.mark_done(f"om_{n}")
            print("ready", flush=True)
        else:
            n = 0
            while True:
                assert await store.admit(message(n))
                # Standing in for the ack: sent only once admit has returned.
                print(f"om_{n}", flush=True)
                n += 1
        await anyio.sleep_forever()


anyio.run(main, sys.argv[1], sys.argv[2])
"""


def _message(n: int) -> InboundMessage:
    return inbound("oc_chat", f"message {n}", message_id=f"om_{n}", event_id="ev_redelivered")


async def _start_child(state_dir: Path, mode: str) -> Process:
    env = {**os.environ, "PYTHONPATH": str(_REPO)}
    return await anyio.open_process(
        [sys.executable, "-c", _CHILD, str(state_dir), mode], env=env, cwd=_REPO
    )


async def _kill(process: Process) -> None:
    process.kill()
    with anyio.fail_after(10):
        assert await process.wait() == -signal.SIGKILL


async def _read_line(stream: BufferedByteReceiveStream) -> str:
    return (await stream.receive_until(b"\n", 1024)).decode()


@pytest.mark.anyio
async def test_killed_after_admits_loses_nothing(tmp_path: Path) -> None:
    async with await _start_child(tmp_path, "batch") as child:
        assert child.stdout is not None
        with anyio.fail_after(30):
            assert await _read_line(BufferedByteReceiveStream(child.stdout)) == "ready"
        await _kill(child)

    async with open_store("sqlite", tmp_path) as store:
        resumable, expired = await store.unfinished(3600)
        assert [m.message_id for m in resumable] == [f"om_{n}" for n in range(20, 50)]
        assert expired == []
        assert resumable[0].text == "message 20"
        for n in range(50):
            assert await store.admit(_message(n)) is False
        assert await store.depth() == 30
    # The dead process's lock file was cleared when its items were taken over.
    assert [p async for p in anyio.Path(tmp_path, "larkbot.owners").iterdir()] == []


@pytest.mark.anyio
async def test_killed_mid_stream_every_acked_message_survives(tmp_path: Path) -> None:
    acked: list[str] = []
    async with await _start_child(tmp_path, "stream") as child:
        assert child.stdout is not None
        lines = BufferedByteReceiveStream(child.stdout)
        with anyio.fail_after(30):
            while len(acked) < 200:
                acked.append(await _read_line(lines))
        await _kill(child)
        # Lines already in the pipe were acked before the kill as well.
        with anyio.fail_after(10):
            try:
                while True:
                    acked.append(await _read_line(lines))
            except (anyio.EndOfStream, anyio.IncompleteRead):
                pass

    assert acked == [f"om_{n}" for n in range(len(acked))]
    async with open_store("sqlite", tmp_path) as store:
        resumable, _ = await store.unfinished(3600)
        resumed = [m.message_id for m in resumable]
        # At most one more: admitted, then killed before its ack went out.
        assert resumed[: len(acked)] == acked
        assert len(resumed) - len(acked) in (0, 1)
        for message in resumable:
            assert await store.admit(message) is False
