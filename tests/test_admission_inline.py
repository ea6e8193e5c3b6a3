"""Admission without a task per frame: :meth:`Admission.offer` into the real SQLite store.

Every decision admission makes without waiting is answered inside ``offer``; a message for
the store is answered from the store's callback, once its row is committed. What must wait
(a card action, a store that only answers an await) is handed back as an awaitable.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from larkbot.admission.admission import Admission, AdmissionPolicy, BotIdentity
from larkbot.admission.events import message_from_event, parse_envelope
from larkbot.core.cards import CardAction, CardAnswer
from larkbot.core.frames import ACK_FAILED, ACK_OVERLOADED, Ack, InboundFrame
from larkbot.core.message import InboundMessage
from larkbot.dispatch.dispatcher import Dispatcher
from larkbot.store import open_store
from larkbot.store.sqlite import SqliteStore
from tests.test_admission import BOT_MENTION, NOW, _count, _event, _frame

pytestmark = pytest.mark.anyio


@dataclass
class Answers:
    """The acks ``offer`` gave, in the order it gave them."""

    acks: list[Ack] = field(default_factory=list)
    changed: anyio.Event = field(default_factory=anyio.Event)

    def respond(self, ack: Ack) -> None:
        self.acks.append(ack)
        self.changed.set()

    async def wait(self, count: int) -> list[Ack]:
        with anyio.fail_after(5):
            while len(self.acks) < count:
                self.changed = anyio.Event()
                await self.changed.wait()
        return self.acks


@dataclass
class Rig:
    admission: Admission
    store: SqliteStore
    dispatcher: Dispatcher
    handled: list[InboundMessage]
    release: anyio.Event


class _Clicks:
    """Card actions answered after a wait: the side road that needs a task."""

    async def on_action(self, action: CardAction) -> CardAnswer:
        await anyio.lowlevel.checkpoint()
        return CardAnswer(toast=f"clicked {action.value}")


@pytest.fixture
async def rig(tmp_path: Path) -> AsyncIterator[Rig]:
    handled: list[InboundMessage] = []
    release = anyio.Event()

    async def handler(message: InboundMessage) -> None:
        await release.wait()
        handled.append(message)

    async with SqliteStore.open(tmp_path) as store, anyio.create_task_group() as tg:
        # Spilled messages are read back from the store, on admission's clock.
        load = functools.partial(store.pending_messages, max_age_seconds=1800, now=NOW)
        dispatcher = Dispatcher(
            handler,
            max_concurrency=4,
            max_backlog=3,
            max_per_chat=3,
            max_spilled=2,
            load_spilled=load,
        )
        await tg.start(dispatcher.run)
        admission = Admission(
            store=store,
            dispatcher=dispatcher,
            identity=BotIdentity(open_id="ou_bot", name="larkbot"),
            policy=AdmissionPolicy(stale_after_seconds=1800),
            clock=lambda: NOW,
            card_actions=_Clicks(),
        )
        yield Rig(admission, store, dispatcher, handled, release)
        release.set()
        tg.cancel_scope.cancel()


async def test_a_message_is_acked_from_the_stores_callback_once_durable(rig: Rig) -> None:
    answers = Answers()
    before = _count("accepted")
    assert rig.admission.offer(_frame(_event("om_new")), answers.respond) is None
    assert answers.acks == [], "the ack waits for the commit"
    [ack] = await answers.wait(1)
    assert ack.code == 200
    assert rig.dispatcher.backlog == 1
    assert _count("accepted") == before + 1
    # Durable: the store knows it, so a re-delivery is a duplicate.
    assert await rig.store.admit(_message("om_new")) is False


def _message(message_id: str) -> InboundMessage:
    return message_from_event(parse_envelope(_frame(_event(message_id)).payload), "ou_bot")


@pytest.mark.parametrize(
    ("frame", "outcome"),
    [
        (_frame(_event(sender="ou_bot")), "self"),
        (_frame(_event(age=timedelta(minutes=31))), "stale"),
        (_frame(_event(chat_type="group")), "unmentioned"),
        (_frame(b"\x00\x01garbage"), "invalid"),
        (_frame(_event(event_type="im.chat.member.user.added_v1")), "unsupported"),
        (_frame(_event(), frame_type="card"), "unsupported"),
    ],
    ids=["self", "stale", "unmentioned", "garbage", "unknown-type", "card-frame"],
)
async def test_decisions_without_the_store_are_answered_inside_offer(
    rig: Rig, frame: InboundFrame, outcome: str
) -> None:
    answers = Answers()
    assert rig.admission.offer(frame, answers.respond) is None
    assert [ack.code for ack in answers.acks] == [200]
    assert rig.dispatcher.backlog == 0


async def test_not_allowed_is_answered_inside_offer(rig: Rig) -> None:
    rig.admission.policy = AdmissionPolicy(allowed_users=frozenset({"ou_ok"}))
    answers = Answers()
    before = _count("not_allowed")
    assert rig.admission.offer(_frame(_event(sender="ou_no")), answers.respond) is None
    assert [ack.code for ack in answers.acks] == [200]
    assert _count("not_allowed") == before + 1


async def test_overload_spills_then_refuses_inside_offer(rig: Rig) -> None:
    answers = Answers()
    # Three fill the backlog, two more spill into the store, the sixth is refused at once.
    for i in range(5):
        frame = _frame(_event(f"om_{i}", chat_id=f"oc_{i}"))
        assert rig.admission.offer(frame, answers.respond) is None
    refused = rig.admission.offer(_frame(_event("om_late", chat_id="oc_9")), answers.respond)
    assert refused is None
    assert answers.acks == [Ack(ACK_OVERLOADED)]
    acks = await answers.wait(6)
    assert [ack.code for ack in acks] == [ACK_OVERLOADED] + [200] * 5
    assert rig.dispatcher.backlog == 3
    rig.release.set()
    with anyio.fail_after(5):
        while len(rig.handled) < 5:
            await rig.dispatcher.wait_idle()
    assert sorted(m.message_id for m in rig.handled) == [f"om_{i}" for i in range(5)]


async def test_duplicates_in_one_batch_are_admitted_once(rig: Rig) -> None:
    answers = Answers()
    before = _count("duplicate")
    for _ in range(3):
        rig.admission.offer(_frame(_event("om_twice")), answers.respond)
    acks = await answers.wait(3)
    assert [ack.code for ack in acks] == [200, 200, 200]
    assert rig.dispatcher.backlog == 1
    assert _count("duplicate") == before + 2


async def test_one_chats_messages_reach_dispatch_in_the_order_offered(tmp_path: Path) -> None:
    handled: list[str] = []

    async def handler(message: InboundMessage) -> None:
        handled.append(message.message_id)

    dispatcher = Dispatcher(handler, max_concurrency=8, max_backlog=500, max_per_chat=200)
    async with SqliteStore.open(tmp_path) as store, anyio.create_task_group() as tg:
        await tg.start(dispatcher.run)
        admission = Admission(
            store=store,
            dispatcher=dispatcher,
            identity=BotIdentity(open_id="ou_bot"),
            clock=lambda: NOW,
        )
        answers = Answers()
        ids = [f"om_{chat}_{i}" for i in range(40) for chat in range(3)]
        for message_id in ids:
            chat = message_id.split("_")[1]
            admission.offer(_frame(_event(message_id, chat_id=f"oc_{chat}")), answers.respond)
            if len(answers.acks) % 7 == 0:
                await anyio.lowlevel.checkpoint()  # let batches commit while others gather
        await answers.wait(len(ids))
        with anyio.fail_after(10):
            while len(handled) < len(ids):
                await dispatcher.wait_idle()
        tg.cancel_scope.cancel()
    for chat in range(3):
        mine = [m for m in ids if m.split("_")[1] == str(chat)]
        assert [m for m in handled if m.split("_")[1] == str(chat)] == mine


async def test_a_card_action_is_handed_back_to_await(rig: Rig) -> None:
    answers = Answers()
    event: dict[str, Any] = {
        "schema": "2.0",
        "header": {"event_id": "ev_click", "event_type": "card.action.trigger"},
        "event": {
            "operator": {"open_id": "ou_user"},
            "token": "c-token",
            "action": {"value": {"k": "v"}, "tag": "button"},
            "context": {"open_message_id": "om_card", "open_chat_id": "oc_1"},
        },
    }
    handled_before = rig.admission.events_handled
    waiting = rig.admission.offer(_frame(event), answers.respond)
    assert waiting is not None
    with anyio.fail_after(5):
        ack = await waiting
    assert ack.code == 200 and ack.data is not None and b"clicked" in ack.data
    assert answers.acks == []
    assert rig.admission.events_handled == handled_before + 1


async def test_a_store_without_callbacks_takes_the_awaited_path() -> None:
    dispatcher = Dispatcher(lambda _m: anyio.lowlevel.checkpoint(), max_backlog=3)
    async with open_store(kind="memory") as store, anyio.create_task_group() as tg:
        await tg.start(dispatcher.run)
        admission = Admission(
            store=store, dispatcher=dispatcher, identity=BotIdentity("ou_bot"), clock=lambda: NOW
        )
        answers = Answers()
        waiting = admission.offer(_frame(_event("om_mem", mentions=BOT_MENTION)), answers.respond)
        assert waiting is not None
        with anyio.fail_after(5):
            assert (await waiting).code == 200
        assert answers.acks == []
        tg.cancel_scope.cancel()


async def test_a_store_error_is_a_500_ack_and_gives_the_room_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    dispatcher = Dispatcher(lambda _m: anyio.lowlevel.checkpoint(), max_backlog=3)
    async with anyio.create_task_group() as tg:
        await tg.start(dispatcher.run)
        async with SqliteStore.open(tmp_path) as store:
            admission = Admission(
                store=store,
                dispatcher=dispatcher,
                identity=BotIdentity("ou_bot"),
                clock=lambda: NOW,
            )
        # The store is closed now: its admits fail.
        answers = Answers()
        admission.offer(_frame(_event("om_lost")), answers.respond)
        [ack] = await answers.wait(1)
        assert ack.code == ACK_FAILED
        assert dispatcher.backlog == 0
        assert dispatcher.reserve("oc_1"), "the reservation was given back"
        dispatcher.release("oc_1")
        tg.cancel_scope.cancel()
    assert any("could not admit message om_lost" in r.getMessage() for r in caplog.records)


class _RefusingStore(SqliteStore):
    """A store whose ``admit_nowait`` fails on the spot rather than through its callback."""

    def admit_nowait(self, message: InboundMessage, then: Any) -> None:
        raise RuntimeError("refused on the spot")


async def test_a_store_refusing_on_the_spot_gives_the_room_back(tmp_path: Path) -> None:
    # An admit that raised used to give its reservation back; the callback path must too,
    # or the dispatcher counts a message that never comes (and a stop waits for it).
    dispatcher = Dispatcher(lambda _m: anyio.lowlevel.checkpoint(), max_backlog=1)
    async with anyio.create_task_group() as tg, _RefusingStore.open(tmp_path) as store:
        await tg.start(dispatcher.run)
        admission = Admission(
            store=store, dispatcher=dispatcher, identity=BotIdentity("ou_bot"), clock=lambda: NOW
        )
        answers = Answers()
        with pytest.raises(RuntimeError, match="refused on the spot"):
            admission.offer(_frame(_event("om_refused")), answers.respond)
        assert answers.acks == []  # the source answers 500 for a handler that raised
        assert dispatcher.reserve("oc_1"), "the reservation was given back"
        dispatcher.release("oc_1")
        tg.cancel_scope.cancel()
