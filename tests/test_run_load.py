"""`larkbot run` as operators start it, under 1,000 messages across 50 chats."""

from __future__ import annotations

import os
import signal
import statistics
import sys
from collections import Counter
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process

from larkbot.testing import LarkStandIn

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CHATS = 50
PER_CHAT = 20
RATE = 250  # messages per second


async def _drain(stream: anyio.abc.ByteReceiveStream | None, sink: bytearray) -> None:
    if stream is None:
        return
    async for chunk in stream:
        sink.extend(chunk)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def test_run_answers_every_message_exactly_once(tmp_path: Path) -> None:
    async with LarkStandIn(app_id="cli_test", app_secret="secret") as lark:
        env = {
            **os.environ,
            "APP_ID": "cli_test",
            "APP_SECRET": "secret",
            "LARK_DOMAIN": lark.url,
            "PORT": "0",
            "LARKBOT_STATE_DIR": str(tmp_path / "state"),
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
        }
        output = bytearray()
        process: Process = await anyio.open_process(
            [sys.executable, "-m", "larkbot", "run"], env=env, stdin=None
        )
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_drain, process.stderr, output)
                tg.start_soon(_drain, process.stdout, output)
                await lark.wait_for(lambda: lark.connections == 1, timeout=20)

                sent: list[str] = []
                # Paced at RATE/s on a fixed schedule: flat out, the stand-in (which
                # shares this loop) would read acks late and the figures would measure it.
                start = anyio.current_time()
                for _turn in range(PER_CHAT):
                    for chat in range(CHATS):
                        await anyio.sleep_until(start + len(sent) / RATE)
                        sent.append(
                            await lark.send_text(
                                "ping",
                                chat_id=f"oc_load_{chat}",
                                sender_open_id=f"ou_load_{chat}",
                            )
                        )
                await lark.wait_for(lambda: len(lark.replies) >= len(sent), timeout=120)
                await anyio.sleep(0.5)  # a second answer, if any, would land now

                process.send_signal(signal.SIGTERM)
                with anyio.fail_after(30):
                    status = await process.wait()
                tg.cancel_scope.cancel()
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()

        replies = Counter(r.to_message_id for r in lark.replies)
        assert set(replies) == set(sent), "every message answered"
        assert max(replies.values()) == 1, "no message answered twice"
        assert lark.suppressed_duplicates == 0
        assert status == 0, output.decode(errors="replace")[-2000:]
        acks = [a.latency_ms for a in lark.acks]
        handling = [float(a.biz_rt or 0) for a in lark.acks]
        assert len(acks) == len(sent) and all(a.code == 200 for a in lark.acks)
        print(
            f"\n{len(sent)} messages over {CHATS} chats: every one answered once; "
            f"ack p50={statistics.median(acks):.2f} ms p99={_percentile(acks, 0.99):.2f} ms "
            f"max={max(acks):.2f} ms; daemon handling (biz_rt) "
            f"p50={statistics.median(handling):.0f} ms p99={_percentile(handling, 0.99):.0f} ms"
        )
