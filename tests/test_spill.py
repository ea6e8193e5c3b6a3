"""A full backlog spills to the store: acked at once, answered later, in order, once."""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import anyio
import pytest

from larkbot.admission.admission import Admission
from larkbot.core.frames import ACK_OVERLOADED
from larkbot.core.message import InboundMessage
from larkbot.dispatch.dispatcher import Dispatcher, SpilledLoader
from larkbot.ops import metrics
from larkbot.store import InboxStatus
from larkbot.store.sqlite import DATABASE_NAME, SqliteStore
from tests._factories import inbound
from tests.test_admission import NOW, _event, _frame, admission_into

pytestmark = pytest.mark.anyio


class _HeldHandler:
    """Records what it handled, in order; holds the answers of ``held`` chats (or all)."""

    def __init__(self, held: set[str] | None = None) -> None:
        self.handled: list[InboundMessage] = []
        self.started = 0
        self._held = held
        self._released = anyio.Event()
        self._changed = anyio.Event()

    async def __call__(self, message: InboundMessage) -> None:
        self.started += 1
        if self._held is None or message.chat_id in self._held:
            await self._released.wait()
        self.handled.append(message)
        self._changed.set()
        self._changed = anyio.Event()

    def release(self) -> None:
        self._released.set()

    @property
    def ids(self) -> list[str]:
        return [message.message_id for message in self.handled]

    async def wait_for(self, message_id: str) -> None:
        """Return once ``message_id`` is handled (wrap it in ``anyio.fail_after``)."""
        while message_id not in self.ids:
            await self._changed.wait()


@dataclass
class _Rig:
    admission: Admission
    dispatcher: Dispatcher
    handler: _HeldHandler
    store: SqliteStore


def _loader(store: SqliteStore, max_age_seconds: float = 1800) -> SpilledLoader:
    """The store's read-back with a stale cutoff, on admission's test clock (``NOW``)."""
    return functools.partial(store.pending_messages, max_age_seconds=max_age_seconds, now=NOW)


@asynccontextmanager
async def _rig(
    state_dir: Path,
    *,
    max_backlog: int = 3,
    max_per_chat: int = 10,
    max_spilled: int = 100,
    held: set[str] | None = None,
    load: SpilledLoader | None = None,
    stale_after: float = 1800,
) -> AsyncIterator[_Rig]:
    """Admission into a backlog of 3 (and 10 per chat) with real SQLite behind it."""
    handler = _HeldHandler(held)
    async with SqliteStore.open(state_dir) as store, anyio.create_task_group() as tg:
        dispatcher = Dispatcher(
            handler,
            max_concurrency=4,
            max_backlog=max_backlog,
            max_per_chat=max_per_chat,
            max_spilled=max_spilled,
            load_spilled=load or _loader(store, stale_after),
        )
        await tg.start(dispatcher.run)
        yield _Rig(admission_into(store, dispatcher), dispatcher, handler, store)
        tg.cancel_scope.cancel()


class _GatedLoader:
    """Reads back from ``store`` once ``gate`` opens; ``reading`` is set meanwhile.

    ``returned`` is set as a read returns: the dispatcher acts on it before it next waits.
    """

    def __init__(self) -> None:
        self.store: SqliteStore | None = None
        self.reading = anyio.Event()
        self.gate = anyio.Event()
        self.returned = anyio.Event()

    async def __call__(
        self, message_ids: Sequence[str]
    ) -> tuple[list[InboundMessage], list[InboundMessage]]:
        self.reading.set()
        await self.gate.wait()
        assert self.store is not None
        found = await _loader(self.store)(message_ids)
        self.returned.set()
        return found


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
    loader = _GatedLoader()
    async with _rig(tmp_path, max_per_chat=2, load=loader) as rig:
        loader.store = rig.store
        sent = [("om_a1", "oc_a"), ("om_b1", "oc_b"), ("om_c1", "oc_c")]
        sent += [("om_d1", "oc_d"), ("om_d2", "oc_d")]
        assert await _send(rig, sent) == [200] * 5
        assert rig.dispatcher.backlog == 3 and rig.dispatcher.spilled == 2
        rig.handler.release()
        with anyio.fail_after(10):
            await loader.reading.wait()  # oc_d's first is being read back
        await anyio.wait_all_tasks_blocked()  # and the three answers are done
        # The backlog has room, but om_e1 goes behind the two being read all the same:
        # the line is one line. oc_d has two waiting (read back or not): its bound.
        assert await _send(rig, [("om_e1", "oc_e"), ("om_d3", "oc_d")]) == [200, ACK_OVERLOADED]
        assert rig.dispatcher.backlog == 0 and rig.dispatcher.spilled == 3
        loader.gate.set()
        with anyio.fail_after(10):
            await rig.dispatcher.wait_idle()
    assert sorted(rig.handler.ids) == ["om_a1", "om_b1", "om_c1", "om_d1", "om_d2", "om_e1"]
    assert [m.message_id for m in rig.handler.handled if m.chat_id == "oc_d"] == ["om_d1", "om_d2"]


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
        assert await _send(rig, [(f"om_{i}", "oc_1") for i in range(6)]) == [200] * 6
        assert rig.dispatcher.spilled == 3
        # Shutdown with the answers held: nothing spilled is moved back, nothing is lost.
        assert not await rig.dispatcher.drain(0.01)
        assert rig.dispatcher.spilled == 3
    assert rig.handler.handled == []
    async with SqliteStore.open(tmp_path) as store:
        resumed, expired = await store.unfinished(max_age_seconds=10**9)
    assert sorted(m.message_id for m in resumed) == [f"om_{i}" for i in range(6)]
    assert expired == []


async def test_refill_reads_only_pending_messages(tmp_path: Path) -> None:
    async with SqliteStore.open(tmp_path) as store:
        messages = [inbound("oc_1", str(i), message_id=f"om_{i}") for i in range(3)]
        for message in messages:
            assert await store.admit(message)
        await store.mark_done("om_1")
        found, expired = await store.pending_messages(
            ["om_2", "om_1", "om_unknown", "om_0"], max_age_seconds=3600
        )
    assert [m.message_id for m in found] == ["om_2", "om_0"]  # in the order asked
    assert found[0] == messages[2]
    assert expired == []


async def test_a_chat_at_its_bound_is_refused_while_other_chats_are_answered_at_once(
    tmp_path: Path,
) -> None:
    async with _rig(tmp_path, max_backlog=1000, max_per_chat=2, held={"oc_hot"}) as rig:
        hot = [(f"om_hot{i}", "oc_hot") for i in range(3)]
        # Two wait in oc_hot (its bound): the third is refused, as without an overflow,
        # instead of spilling and holding every later message of every chat behind it.
        assert await _send(rig, hot) == [200, 200, ACK_OVERLOADED]
        assert rig.dispatcher.spilled == 0
        assert await _send(rig, [("om_quiet", "oc_quiet")]) == [200]
        with anyio.fail_after(10):
            await rig.handler.wait_for("om_quiet")
        assert rig.handler.ids == ["om_quiet"]
        rig.handler.release()
        with anyio.fail_after(10):
            await rig.dispatcher.wait_idle()
        # Lark's re-delivery of the refused one is taken once the chat has room.
        assert await _send(rig, [("om_hot2", "oc_hot")]) == [200]
        with anyio.fail_after(10):
            await rig.dispatcher.wait_idle()
    assert [m for m in rig.handler.ids if m.startswith("om_hot")] == [m for m, _ in hot]


async def test_one_chat_cannot_fill_the_overflow(tmp_path: Path) -> None:
    async with _rig(tmp_path, max_backlog=1, max_per_chat=3) as rig:
        hot = [(f"om_hot{i}", "oc_hot") for i in range(5)]
        # One in the backlog and two spilled: oc_hot's bound counts its spilled ones.
        assert await _send(rig, hot) == [200] * 3 + [ACK_OVERLOADED] * 2
        assert rig.dispatcher.backlog == 1 and rig.dispatcher.spilled == 2
        assert await _send(rig, [("om_quiet", "oc_quiet")]) == [200]
        assert rig.dispatcher.spilled == 3
        rig.handler.release()
        with anyio.fail_after(10):
            await rig.dispatcher.wait_idle()
    assert rig.handler.ids == ["om_hot0", "om_hot1", "om_hot2", "om_quiet"]


async def test_resumed_messages_beyond_the_bounds_wait_in_the_store(tmp_path: Path) -> None:
    async with _rig(tmp_path, max_backlog=10, max_per_chat=2, held={"oc_a"}) as rig:
        # What a start takes over from the inbox: acked before, so refused never.
        resumed = [inbound("oc_a", message_id=f"om_a{i}") for i in range(4)]
        resumed.append(inbound("oc_b", message_id="om_b0"))
        for message in resumed:
            assert await rig.store.admit(message)
        assert rig.dispatcher.resume(resumed) == 3
        assert rig.dispatcher.backlog == 2 and rig.dispatcher.spilled == 3
        # oc_a is full with its first two held, so its other two wait; oc_b's behind them
        # moves on all the same.
        with anyio.fail_after(10):
            await rig.handler.wait_for("om_b0")
        assert rig.dispatcher.spilled == 2
        rig.handler.release()
        with anyio.fail_after(10):
            await rig.dispatcher.wait_idle()
    assert rig.handler.ids == ["om_b0", "om_a0", "om_a1", "om_a2", "om_a3"]


async def test_a_place_still_being_written_holds_up_only_its_own_chat(tmp_path: Path) -> None:
    async with _rig(tmp_path, held=set()) as rig:
        # om_w1's admission is still writing when om_x1 spills behind it.
        writing = rig.dispatcher.spill("om_w1", "oc_w")
        assert writing is not None
        assert await _send(rig, [("om_x1", "oc_x")]) == [200]
        with anyio.fail_after(10):
            await rig.handler.wait_for("om_x1")
        assert await _send(rig, [("om_w2", "oc_w")]) == [200]
        assert await rig.store.admit(inbound("oc_w", message_id="om_w1"))
        writing.settle(True)
        with anyio.fail_after(10):
            await rig.dispatcher.wait_idle()
    assert rig.handler.ids == ["om_x1", "om_w1", "om_w2"]


def _lapse_leases(state_dir: Path) -> None:
    """Make every owner's heartbeat ancient, as if its process had been frozen."""
    db = sqlite3.connect(state_dir / DATABASE_NAME)
    try:
        db.execute("UPDATE owners SET heartbeat_at = 0")
        db.commit()
    finally:
        db.close()


async def test_spilled_messages_another_process_took_over_are_not_answered_here(
    tmp_path: Path,
) -> None:
    async with _rig(tmp_path, max_backlog=1, held={"oc_1"}) as rig:
        assert await _send(rig, [(f"om_{i}", "oc_1") for i in range(3)]) == [200] * 3
        assert rig.dispatcher.spilled == 2
        # This process's lease lapsed (frozen, or a locked database): another takes over
        # its pending items, the spilled ones among them.
        await anyio.to_thread.run_sync(_lapse_leases, tmp_path)
        async with SqliteStore.open(tmp_path) as other:
            taken, _ = await other.unfinished(10**9)
            assert sorted(m.message_id for m in taken) == ["om_0", "om_1", "om_2"]
            rig.handler.release()
            with anyio.fail_after(10):
                await rig.dispatcher.wait_idle()
    # om_0 was in memory before the take-over; the two spilled are the other's to answer.
    assert rig.handler.ids == ["om_0"]
    assert rig.dispatcher.spilled == 0


async def test_spilled_messages_past_the_stale_cutoff_are_expired_not_answered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="larkbot.dispatch")
    async with _rig(tmp_path, max_backlog=1, stale_after=60) as rig:
        ages = {"om_0": 1, "om_old1": 120, "om_new": 1, "om_old2": 90}
        for message_id, age in ages.items():
            frame = _frame(_event(message_id, chat_id="oc_1", age=timedelta(seconds=age)))
            assert (await rig.admission(frame)).code == 200
        assert rig.dispatcher.spilled == 3
        rig.handler.release()
        with anyio.fail_after(10):
            await rig.dispatcher.wait_idle()
        for message_id in ("om_old1", "om_old2"):
            item = await rig.store.lookup(message_id)
            assert item is not None and item.status is InboxStatus.EXPIRED
    assert rig.handler.ids == ["om_0", "om_new"]
    stale = [r.getMessage() for r in caplog.records if "stale cutoff" in r.getMessage()]
    assert len(stale) <= 2 and sum(int(line.split()[2]) for line in stale) == 2


async def test_shutdown_during_a_read_back_keeps_the_batch_in_the_store(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="larkbot.dispatch")
    loader = _GatedLoader()
    async with _rig(tmp_path, max_backlog=1, load=loader) as rig:
        loader.store = rig.store
        assert await _send(rig, [(f"om_{i}", f"oc_{i}") for i in range(4)]) == [200] * 4
        assert rig.dispatcher.spilled == 3
        rig.handler.release()
        with anyio.fail_after(10):
            await loader.reading.wait()
        rig.dispatcher.stop_accepting()
        loader.gate.set()
        with anyio.fail_after(10):
            await loader.returned.wait()
        # Read back after the stop: nothing is queued, all three stay pending and counted
        # (the shutdown log reports them), and spilling is not reported as over.
        assert rig.dispatcher.backlog == 0 and rig.dispatcher.spilled == 3
        for message_id in ("om_1", "om_2", "om_3"):
            item = await rig.store.lookup(message_id)
            assert item is not None and item.status is InboxStatus.PENDING
    assert rig.handler.ids == ["om_0"]
    assert not [r for r in caplog.records if "room again" in r.getMessage()]


async def test_a_failure_other_than_the_stores_is_not_taken_for_a_passing_one(
    tmp_path: Path,
) -> None:
    async def broken(
        message_ids: Sequence[str],
    ) -> tuple[list[InboundMessage], list[InboundMessage]]:
        raise RuntimeError("a bug, not a locked database")

    with pytest.raises(BaseExceptionGroup) as raised:
        async with _rig(tmp_path, max_backlog=1, load=broken) as rig:
            assert await _send(rig, [("om_0", "oc_0"), ("om_1", "oc_1")]) == [200, 200]
            rig.handler.release()
            with anyio.fail_after(10):
                await anyio.sleep_forever()
    assert raised.group_contains(RuntimeError, match="a bug")
