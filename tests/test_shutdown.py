"""Shutdown of ``larkbot run`` under signals: graceful first, at once on the second.

Either way nothing is lost: what is not answered before the process ends stays in the
inbox of the state directory, and the next start answers it, once.
"""

from __future__ import annotations

import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from larkbot.testing import LarkStandIn
from tests._daemon import assert_answered_once
from tests._proc import LarkbotProcess, larkbot_process, llm_env, needs_llm, reply_text, slow_llm

pytestmark = pytest.mark.anyio

# What "at once" means here: well inside the 25 s default grace a stop must not wait out,
# with room for a loaded machine. The figures each test prints are the measurement.
AT_ONCE_SECONDS = 10.0


async def _sigterm_while_thinking(
    lark: LarkStandIn, llm: Any, bot: LarkbotProcess, text: str
) -> tuple[str, float]:
    """Send ``text``; once the held model has it, SIGTERM ``bot``.

    :return: the message's id and the moment of the signal (``time.monotonic``).
    """
    message_id = await lark.send_text(text)
    await lark.wait_for(lambda: llm.held == 1, timeout=60)
    signalled = time.monotonic()
    bot.send_signal(signal.SIGTERM)
    return message_id, signalled


@dataclass
class _Stopped:
    """A run stopped while its model was thinking: the message it left and how it exited."""

    lark: LarkStandIn
    llm: Any
    state_dir: Path
    bot: LarkbotProcess
    env: dict[str, str]
    message_id: str
    exited_after: float


@asynccontextmanager
async def _stopped_while_thinking(
    state_dir: Path, *, grace_seconds: int, second_sigterm: bool
) -> AsyncIterator[_Stopped]:
    """Run larkbot until its model holds a message, then SIGTERM it.

    With ``second_sigterm``, a second SIGTERM follows once the first has closed the long
    connection. The run must exit 0 either way.
    """
    async with LarkStandIn() as lark, slow_llm(delay=0.0) as llm:
        llm.hold()  # still thinking until the next start
        env = {**llm_env(llm), "LARKBOT_SHUTDOWN__GRACE_SECONDS": str(grace_seconds)}
        async with larkbot_process(lark, state_dir, env) as bot:
            message_id, signalled = await _sigterm_while_thinking(lark, llm, bot, "still thinking")
            if second_sigterm:
                await lark.wait_for(lambda: lark.connections == 0, timeout=15)
                bot.send_signal(signal.SIGTERM)
            status = await bot.wait(timeout=20)
            exited_after = time.monotonic() - signalled
        assert status == 0, bot.raw[-20:]
        yield _Stopped(lark, llm, state_dir, bot, env, message_id, exited_after)


async def _answered_by_the_next_start(stopped: _Stopped) -> None:
    """Start again on the same state directory: the message left is answered, once."""
    lark = stopped.lark
    stopped.llm.release()
    await lark.wait_for(lambda: lark.connections == 0, timeout=15)
    async with larkbot_process(lark, stopped.state_dir, stopped.env) as bot:
        await lark.wait_for(lambda: len(lark.replies) == 1, timeout=60)
        bot.send_signal(signal.SIGTERM)
        assert await bot.wait(timeout=30) == 0
    resumed = [line.get("message_id") for line in bot.log_lines("resuming message")]
    assert resumed == [stopped.message_id]
    assert lark.replies[0].to_message_id == stopped.message_id
    assert "LLM: still thinking" in reply_text(lark.replies[0])
    assert lark.suppressed_duplicates == 0
    assert len(lark.acks) == 1  # from the inbox, not from a re-delivery


@needs_llm
@pytest.mark.slow
async def test_second_sigterm_exits_at_once_and_the_next_start_answers(tmp_path: Path) -> None:
    async with _stopped_while_thinking(tmp_path, grace_seconds=25, second_sigterm=True) as stopped:
        assert stopped.exited_after < AT_ONCE_SECONDS  # not the 25 s grace
        assert not stopped.lark.replies
        errors = [line for line in stopped.bot.lines if line.get("level") in ("ERROR", "CRITICAL")]
        assert not errors
        print(
            f"\ntwo SIGTERMs: exit 0 after {stopped.exited_after:.2f} s, message left in the inbox"
        )
        await _answered_by_the_next_start(stopped)


@needs_llm
@pytest.mark.slow
async def test_grace_period_over_leaves_the_message_for_the_next_start(tmp_path: Path) -> None:
    async with _stopped_while_thinking(tmp_path, grace_seconds=1, second_sigterm=False) as stopped:
        # It waited out its 1 s grace, and not the answer, which never came.
        assert 1.0 <= stopped.exited_after < 1.0 + AT_ONCE_SECONDS
        assert not stopped.lark.replies
        assert len(stopped.bot.log_lines("grace period of 1 s over")) == 1
        print(f"\ngrace period of 1 s: exit 0 after {stopped.exited_after:.2f} s")
        await _answered_by_the_next_start(stopped)


async def test_sigterm_when_idle_exits_at_once(tmp_path: Path) -> None:
    async with LarkStandIn() as lark, larkbot_process(lark, tmp_path) as bot:
        message_id = await lark.send_text("help")
        await lark.wait_for(lambda: len(lark.replies) == 1, timeout=60)
        signalled = time.monotonic()
        bot.send_signal(signal.SIGTERM)
        status = await bot.wait(timeout=20)
        exited_after = time.monotonic() - signalled
    assert status == 0, bot.raw[-20:]
    assert exited_after < AT_ONCE_SECONDS  # nothing in flight: no grace to wait out
    assert lark.replies[0].to_message_id == message_id
    print(f"\nidle SIGTERM: exit 0 after {exited_after:.2f} s")


@needs_llm
@pytest.mark.slow
async def test_drill_sigterm_while_the_agent_is_thinking(tmp_path: Path) -> None:
    async with LarkStandIn() as lark, slow_llm(delay=0.0) as llm:
        llm.hold()  # the model answers when the test says so
        env = {**llm_env(llm), "LARKBOT_SHUTDOWN__GRACE_SECONDS": "10"}
        async with larkbot_process(lark, tmp_path, env) as bot:
            message_id, signalled = await _sigterm_while_thinking(lark, llm, bot, "think slowly")
            # The long connection goes first, so the platform sends new events elsewhere,
            # while the answer in flight is still being thought and the process waits for it.
            await lark.wait_for(lambda: lark.connections == 0, timeout=15)
            closed_after = time.monotonic() - signalled
            assert not lark.replies and bot.process.returncode is None
            llm.release()
            status = await bot.wait(timeout=30)
            exited_after = time.monotonic() - signalled
        assert status == 0, bot.raw[-20:]
        # The answer landed before the exit: the drain finished within its grace period.
        assert len(lark.replies) == 1 and lark.replies[0].at - signalled < exited_after
        assert not bot.log_lines("grace period")
        print(
            f"\nSIGTERM while thinking: connection closed after {closed_after:.2f} s, "
            f"reply landed and exit 0 after {exited_after:.2f} s (grace 10 s)"
        )
        assert_answered_once(lark, [message_id])
