"""`larkbot run` as operators start it, under 1,000 messages across 50 chats."""

from __future__ import annotations

import signal
import statistics
from collections import Counter
from pathlib import Path

import anyio
import pytest

from larkbot.testing import LarkStandIn
from tests._proc import larkbot_process

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

CHATS = 50
PER_CHAT = 20
RATE = 250  # messages per second


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def test_run_answers_every_message_exactly_once(tmp_path: Path) -> None:
    async with (
        LarkStandIn(app_id="cli_test") as lark,
        larkbot_process(lark, tmp_path, {"LOG_LEVEL": "WARNING"}) as bot,
    ):
        sent: list[str] = []
        # Paced at RATE/s on a fixed schedule: flat out, the stand-in (which shares this
        # loop) would read acks late and the figures would measure it.
        start = anyio.current_time()
        for _turn in range(PER_CHAT):
            for chat in range(CHATS):
                await anyio.sleep_until(start + len(sent) / RATE)
                sent.append(
                    await lark.send_text(
                        "ping", chat_id=f"oc_load_{chat}", sender_open_id=f"ou_load_{chat}"
                    )
                )
        await lark.wait_for(lambda: len(lark.replies) >= len(sent), timeout=120)
        # A graceful stop finishes whatever is in flight, so a second answer, if any,
        # would be recorded by the time the process has exited.
        bot.send_signal(signal.SIGTERM)
        status = await bot.wait(30)
        output = "\n".join(bot.raw[-40:])

        replies = Counter(r.to_message_id for r in lark.replies)
        assert set(replies) == set(sent), "every message answered"
        assert max(replies.values()) == 1, "no message answered twice"
        assert lark.suppressed_duplicates == 0
        assert status == 0, output
        acks = [a.latency_ms for a in lark.acks]
        handling = [float(a.biz_rt or 0) for a in lark.acks]
        assert len(acks) == len(sent) and all(a.code == 200 for a in lark.acks)
        print(
            f"\n{len(sent)} messages over {CHATS} chats: every one answered once; "
            f"ack p50={statistics.median(acks):.2f} ms p99={_percentile(acks, 0.99):.2f} ms "
            f"max={max(acks):.2f} ms; daemon handling (biz_rt) "
            f"p50={statistics.median(handling):.0f} ms p99={_percentile(handling, 0.99):.0f} ms"
        )
