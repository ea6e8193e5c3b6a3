"""Acks of frames taken inline: the long connection, admission and SQLite, with no task per frame.

Driven through the local Lark over a real socket: order into dispatch, acks once each with
the daemon's own ``biz_rt``, a handler bug answered 500, and a connection that closes while
admits are under way losing nothing.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest
from websockets.asyncio.client import ClientConnection, connect

from larkbot.admission.admission import Admission, BotIdentity
from larkbot.core.cards import CardAction, CardAnswer
from larkbot.core.frames import ACK_FAILED, Ack, InboundFrame
from larkbot.core.message import InboundMessage
from larkbot.dispatch.dispatcher import Dispatcher
from larkbot.lark.client import LarkClient
from larkbot.sources.longconn.connection import (
    _MAX_FRAMES_IN_FLIGHT,
    LongConnection,
    _AckWriter,
    discover_endpoint,
)
from larkbot.sources.longconn.frames import Frame, FrameMethod
from larkbot.store.sqlite import DATABASE_NAME, SqliteStore
from larkbot.testing import LarkStandIn
from larkbot.testing._events import build_card_action_event

pytestmark = pytest.mark.anyio


class _Clicks:
    """Card actions that wait before answering: frames that need a task of their own."""

    async def on_action(self, action: CardAction) -> CardAnswer:
        await anyio.sleep(0.001)
        return CardAnswer(toast="ok")


class _BuggyAdmission(Admission):
    """Admission with a bug for one sender: its messages raise inside ``offer``."""

    def _policy_outcome(self, message: InboundMessage, sender_type: str) -> str | None:
        if message.sender_open_id == "ou_buggy":
            raise RuntimeError("a bug in admission")
        return super()._policy_outcome(message, sender_type)


@dataclass
class _Rig:
    lark: LarkStandIn
    connection: LongConnection
    store: SqliteStore
    handled: list[InboundMessage]


@asynccontextmanager
async def _connected(
    tmp_path: Path, admission_type: type[Admission] = Admission
) -> AsyncIterator[_Rig]:
    handled: list[InboundMessage] = []

    async def answer(message: InboundMessage) -> None:
        handled.append(message)

    async with (
        LarkStandIn(reconnect_interval=1, reconnect_nonce=0) as lark,
        LarkClient(lark.url, lark.app_id, lark.app_secret) as client,
        SqliteStore.open(tmp_path) as store,
        anyio.create_task_group() as tg,
    ):
        dispatcher = Dispatcher(answer, max_concurrency=8, max_backlog=1000, max_per_chat=500)
        await tg.start(dispatcher.run)
        admission = admission_type(
            store=store,
            dispatcher=dispatcher,
            identity=BotIdentity(open_id=lark.bot_open_id, name=lark.bot_name),
            card_actions=_Clicks(),
        )
        connection = LongConnection(client=client, handler=admission)
        tg.start_soon(connection.run)
        await lark.wait_connected(10)
        yield _Rig(lark, connection, store, handled)
        connection.close()
        tg.cancel_scope.cancel()


async def test_chats_reach_dispatch_in_order_and_every_frame_is_acked_once(
    tmp_path: Path,
) -> None:
    async with _connected(tmp_path) as rig:
        lark = rig.lark
        sent: dict[str, list[str]] = {f"oc_{chat}": [] for chat in range(4)}
        for i in range(50):
            chat = f"oc_{i % 4}"
            sent[chat].append(await lark.send_text(f"m{i}", chat_id=chat))
            if i % 10 == 0:  # a click between messages takes the road with a task
                await lark.push_event(_click(lark, i))
        total = 50 + 5
        await lark.wait_for(lambda: len(lark.acks) >= total, timeout=20)
        await lark.wait_for(lambda: len(rig.handled) == 50, timeout=20)
        assert all(ack.code == 200 for ack in lark.acks)
        assert len({ack.frame_id for ack in lark.acks}) == len(lark.acks) == total
        assert all(ack.biz_rt is not None and ack.biz_rt >= 0 for ack in lark.acks)
        for chat, ids in sent.items():
            assert [m.message_id for m in rig.handled if m.chat_id == chat] == ids
        # Every frame's place among those in flight was given back.
        await lark.wait_for(lambda: rig.connection._frames_in_flight.value == _MAX_FRAMES_IN_FLIGHT)


def _click(lark: LarkStandIn, n: int) -> dict[str, Any]:
    return build_card_action_event(
        {"k": "v"}, app_id=lark.app_id, tenant_key=lark.tenant_key, open_message_id=f"om_card_{n}"
    )


async def test_a_bug_in_the_inline_handler_is_a_500_ack_and_the_next_frame_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with _connected(tmp_path, _BuggyAdmission) as rig:
        lark = rig.lark
        with caplog.at_level(logging.ERROR, logger="larkbot.sources"):
            buggy = await lark.send_text("boom", sender_open_id="ou_buggy")
            fine = await lark.send_text("fine")
            await lark.wait_for(lambda: {a.chat_message_id for a in lark.acks} >= {buggy, fine})
        codes = {a.chat_message_id: a.code for a in lark.acks}
        assert codes[buggy] == ACK_FAILED
        assert codes[fine] == 200
        assert any("frame handler failed" in r.getMessage() for r in caplog.records)
        await lark.wait_for(lambda: [m.message_id for m in rig.handled] == [fine])
        await lark.wait_for(lambda: rig.connection._frames_in_flight.value == _MAX_FRAMES_IN_FLIGHT)


async def test_a_dropped_connection_loses_nothing_and_answers_nothing_twice(
    tmp_path: Path,
) -> None:
    async with _connected(tmp_path) as rig:
        lark = rig.lark
        # The platform's retries: a frame not acked in time is delivered again.
        lark.cluster_mode(ack_timeout=1.0, redeliver_after=0.1)
        ids = [await lark.send_text(f"m{i}", chat_id=f"oc_{i % 3}") for i in range(40)]
        # Cut the socket with admits under way; unacked frames are delivered again.
        await lark.drop_connections()
        await lark.wait_connected(10)
        for message_id in ids:
            await lark.wait_accepted(message_id, timeout=20)
        await lark.wait_for(lambda: len(rig.handled) >= len(ids), timeout=20)
        assert sorted(m.message_id for m in rig.handled) == sorted(ids)
        await lark.wait_for(lambda: rig.connection._frames_in_flight.value == _MAX_FRAMES_IN_FLIGHT)


def _tracked_frame(frame_id: str) -> tuple[Frame, InboundFrame]:
    frame = Frame(SeqID=1, LogID=1, service=0, method=FrameMethod.DATA)
    header = frame.headers.add()
    header.key, header.value = "message_id", frame_id
    return frame, InboundFrame(frame_id, "event", "t", b"{}", 0.0, "conn")


@asynccontextmanager
async def _socket() -> AsyncIterator[tuple[LarkStandIn, ClientConnection]]:
    async with (
        LarkStandIn() as lark,
        LarkClient(lark.url, lark.app_id, lark.app_secret) as client,
        connect(await discover_endpoint(client), proxy=None) as ws,
    ):
        yield lark, ws


async def test_the_ack_writer_waits_for_frames_taken_and_drops_acks_after_its_session(
    caplog: pytest.LogCaptureFixture,
) -> None:
    released: list[int] = []
    frame, data = _tracked_frame("f_late")
    async with _socket() as (lark, ws):
        writer = _AckWriter(ws, lambda: released.append(1))
        ended = anyio.Event()

        async def session() -> None:
            async with anyio.create_task_group() as tg:
                tg.start_soon(writer.run)
                await anyio.wait_all_tasks_blocked()
                tg.cancel_scope.cancel()
            ended.set()

        pending = writer.expect(frame, data)
        with caplog.at_level(logging.INFO, logger="larkbot.sources"):
            async with anyio.create_task_group() as tg:
                tg.start_soon(session)
                await anyio.wait_all_tasks_blocked()
                # The session waits for the frame it took before it ends, and the socket,
                # still open, takes its ack.
                assert not ended.is_set()
                pending(Ack())
                with anyio.fail_after(5):
                    await ended.wait()
            assert released == [1]
            await lark.wait_for(lambda: lark.unmatched_acks == 1)  # a frame it never sent
            # A frame taken after the session ended is answered nowhere but in the log, once.
            other, other_data = _tracked_frame("f_after")
            late = writer.expect(other, other_data)
            late(Ack())
            late(Ack(ACK_FAILED))
            assert released == [1, 1]
        closed = [
            r.getMessage() for r in caplog.records if "closed before the ack" in r.getMessage()
        ]
        assert closed == ["connection closed before the ack of frame f_after"]
        assert lark.unmatched_acks == 1


async def test_acks_of_admits_committed_after_a_stop_still_go_out(tmp_path: Path) -> None:
    # Regression: a stopping session marked its writer closed before waiting for the
    # admits under way, so their acks were dropped though the socket was still open, and
    # Lark delivered those messages again (to another replica, perhaps).
    async with _connected(tmp_path) as rig:
        lark = rig.lark
        # Another writer holds the database: the admits wait on SQLite's busy timeout.
        blocker = await anyio.to_thread.run_sync(_hold_database, tmp_path)
        try:
            ids = [await lark.send_text(f"m{i}") for i in range(5)]
            await lark.wait_for(
                lambda: rig.connection._frames_in_flight.value == _MAX_FRAMES_IN_FLIGHT - 5
            )
            rig.connection.close()  # a graceful stop: no more reading
            await anyio.wait_all_tasks_blocked()
        finally:
            await anyio.to_thread.run_sync(blocker.close)  # rolls back: the admits go on
        await lark.wait_for(lambda: {a.chat_message_id for a in lark.acks} >= set(ids))
        assert all(a.code == 200 for a in lark.acks)
        await lark.wait_for(lambda: len(rig.handled) == len(ids))


def _hold_database(directory: Path) -> sqlite3.Connection:
    blocker = sqlite3.connect(directory / DATABASE_NAME, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    return blocker


async def test_an_ack_is_written_in_place_without_the_writers_task() -> None:
    released: list[int] = []
    async with _socket() as (lark, ws):
        writer = _AckWriter(ws, lambda: released.append(1))
        frame, data = _tracked_frame("f_now")
        # No task runs the writer: the ack can only go out from this call.
        writer.expect(frame, data)(Ack())
        assert released == [1]
        # The stand-in did not deliver this frame: its ack lands as unmatched.
        await lark.wait_for(lambda: lark.unmatched_acks == 1)
        assert lark.bad_frames == 0


async def test_an_ack_the_socket_cannot_take_now_goes_out_from_the_writers_task() -> None:
    released: list[int] = []
    async with _socket() as (lark, ws), anyio.create_task_group() as tg:
        writer = _AckWriter(ws, lambda: released.append(1))
        writer._in_place = False  # as with a websockets that lacks what in place needs
        tg.start_soon(writer.run)
        frame, data = _tracked_frame("f_later")
        writer.expect(frame, data)(Ack())
        assert released == []
        await lark.wait_for(lambda: lark.unmatched_acks == 1)
        assert released == [1]
        assert lark.bad_frames == 0
        tg.cancel_scope.cancel()
