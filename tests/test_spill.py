"""A full backlog spills to the store: acked at once, answered later, in order, once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from larkbot.admission.admission import Admission
from larkbot.core.frames import ACK_OVERLOADED
from larkbot.core.message import InboundMessage
from larkbot.dispatch.dispatcher import Dispatcher
from larkbot.ops import metrics
from larkbot.store import InboxStatus, Store
from larkbot.store.sqlite import SqliteStore
from tests._factories import inbound
from tests.test_admission import _event, _frame, admission_into

pytestmark = pytest.mark.anyio


class _HeldHandler:
    """Records what it handled, in order; holds every answer until ``release``."""

    def __init__(self) -> None:
        self.handled: list[InboundMessage] = []
        self.started = 0
        self._released = anyio.Event()

    async def __call__(self, message: InboundMessage) -> None:
        self.started += 1
        await self._released.wait()
        self.handled.append(message)

    def release(self) -> None:
        self._released.set()


@dataclass
class _Rig:
    admission: Admission
    dispatcher: Dispatcher
    handler: _HeldHandler
    store: Store


@asynccontextmanager
async def _rig(state_dir: Path, *, max_spilled: int = 100) -> AsyncIterator[_Rig]:
    """Admission into a backlog of 3 (and 2 per chat) with real SQLite behind it."""
    handler = _HeldHandler()
    async with SqliteStore.open(state_dir) as store, anyio.create_task_group() as tg:
        dispatcher = Dispatcher(
            handler,
            max_concurrency=4,
            max_backlog=3,
            max_per_chat=2,
            max_spilled=max_spilled,
            load_spilled=store.pending_messages,
        )
        await tg.start(dispatcher.run)
        yield _Rig(admission_into(store, dispatcher), dispatcher, handler, store)
        tg.cancel_scope.cancel()


def _spilled_gauge() -> float:
    return metrics.REGISTRY.get_sample_value("larkbot_dispatch_spilled") or 0.0


async def _send(rig: _Rig, sent: list[tuple[str, str]]) -> list[int]:
    """Deliver ``(message_id, chat_id)`` frames one after another; their ack codes."""
    return [
        (await rig.admission(_frame(_event(message_id, chat_id=chat_id)))).code
        for message_id, chat_id in sent
    ]


async def test_full_backlog_spills_then_answers_all_once_in_chat_order(tmp_path: Path) -> None:
    sent = [(f"om_{i}", f"oc_{i % 2}") for i in range(12)]
    async with _rig(tmp_path) as rig:
        codes = await _send(rig, sent)
        assert codes == [200] * 12, "a full backlog spills instead of refusing"
        assert rig.dispatcher.backlog == 3
        assert rig.dispatcher.spilled == 9
        assert _spilled_gauge() == 9
        # Spilled means admitted: durable and pending before the ack.
        for message_id, _chat in sent:
            item = await rig.store.lookup(message_id)
            assert item is not None and item.status is InboxStatus.PENDING
        # A re-delivery of a spilled message is a duplicate, as for any admitted one.
        assert await _send(rig, [("om_11", "oc_1")]) == [200]
        rig.handler.release()
        with anyio.fail_after(10):
            await rig.dispatcher.wait_idle()
        assert rig.dispatcher.spilled == 0 and _spilled_gauge() == 0
    handled = [message.message_id for message in rig.handler.handled]
    assert sorted(handled) == sorted(message_id for message_id, _ in sent)  # each once
    for chat in ("oc_0", "oc_1"):
        in_chat = [message_id for message_id, chat_id in sent if chat_id == chat]
        assert [m.message_id for m in rig.handler.handled if m.chat_id == chat] == in_chat


async def test_new_messages_queue_behind_spilled_ones(tmp_path: Path) -> None:
    async with _rig(tmp_path) as rig:
        assert (
            await _send(rig, [("om_a1", "oc_a"), ("om_a2", "oc_a"), ("om_a3", "oc_a")]) == [200] * 3
        )
        # oc_a is full (2 per chat), so om_a3 spilled; om_b1 has room in the backlog, but
        # goes behind the spilled message all the same: the line is one line.
        assert await _send(rig, [("om_b1", "oc_b")]) == [200]
        assert rig.dispatcher.backlog == 2 and rig.dispatcher.spilled == 2
        rig.handler.release()
        with anyio.fail_after(10):
            await rig.dispatcher.wait_idle()
    assert [m.message_id for m in rig.handler.handled if m.chat_id == "oc_a"] == [
        "om_a1",
        "om_a2",
        "om_a3",
    ]
    assert len(rig.handler.handled) == 4


async def test_overflow_bound_reached_refuses_as_before(tmp_path: Path) -> None:
    async with _rig(tmp_path, max_spilled=2) as rig:
        codes = await _send(rig, [(f"om_{i}", f"oc_{i}") for i in range(6)])
        assert codes == [200] * 5 + [ACK_OVERLOADED]
        assert rig.dispatcher.spilled == 2
        # The refused one was not recorded as seen: its re-delivery, once there is room,
        # is taken and answered.
        assert await rig.store.lookup("om_5") is None
        rig.handler.release()
        with anyio.fail_after(10):
            await rig.dispatcher.wait_idle()
        assert await _send(rig, [("om_5", "oc_5")]) == [200]
        with anyio.fail_after(10):
            await rig.dispatcher.wait_idle()
    assert sorted(m.message_id for m in rig.handler.handled) == [f"om_{i}" for i in range(6)]


async def test_spilled_messages_stay_pending_for_the_next_start(tmp_path: Path) -> None:
    async with _rig(tmp_path) as rig:
        assert await _send(rig, [(f"om_{i}", "oc_1") for i in range(5)]) == [200] * 5
        assert rig.dispatcher.spilled == 3
        # Shutdown with the answers held: nothing spilled is moved back, nothing is lost.
        assert not await rig.dispatcher.drain(0.01)
        assert rig.dispatcher.spilled == 3
    assert rig.handler.handled == []
    async with SqliteStore.open(tmp_path) as store:
        resumed, expired = await store.unfinished(max_age_seconds=10**9)
    assert sorted(m.message_id for m in resumed) == [f"om_{i}" for i in range(5)]
    assert expired == []


async def test_refill_reads_only_pending_messages(tmp_path: Path) -> None:
    async with SqliteStore.open(tmp_path) as store:
        messages = [inbound("oc_1", str(i), message_id=f"om_{i}") for i in range(3)]
        for message in messages:
            assert await store.admit(message)
        await store.mark_done("om_1")
        found = await store.pending_messages(["om_2", "om_1", "om_unknown", "om_0"])
    assert [m.message_id for m in found] == ["om_2", "om_0"]  # in the order asked
    assert found[0] == messages[2]
