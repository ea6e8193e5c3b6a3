"""Admission decisions: what is answered, what is skipped, what is refused for now."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import pytest

from larkbot.admission.admission import Admission, AdmissionPolicy, BotIdentity
from larkbot.core.frames import ACK_OVERLOADED, InboundFrame
from larkbot.core.message import InboundMessage
from larkbot.dispatch.dispatcher import Dispatcher
from larkbot.ops import metrics
from larkbot.store import Store, open_store

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def _frame(payload: bytes | dict[str, Any], frame_type: str = "event") -> InboundFrame:
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return InboundFrame("f1", frame_type, "t1", data, 0.0, "conn")


def _event(
    message_id: str = "om_1",
    *,
    chat_type: str = "p2p",
    sender: str = "ou_user",
    sender_type: str = "user",
    mentions: list[dict[str, Any]] | None = None,
    age: timedelta = timedelta(seconds=1),
    chat_id: str = "oc_1",
    event_type: str = "im.message.receive_v1",
) -> dict[str, Any]:
    created = str(int((NOW - age).timestamp() * 1000))
    return {
        "schema": "2.0",
        "header": {"event_id": f"ev_{message_id}", "event_type": event_type},
        "event": {
            "sender": {"sender_id": {"open_id": sender}, "sender_type": sender_type},
            "message": {
                "message_id": message_id,
                "create_time": created,
                "chat_id": chat_id,
                "chat_type": chat_type,
                "message_type": "text",
                "content": json.dumps({"text": "hello"}),
                "mentions": mentions or [],
            },
        },
    }


BOT_MENTION = [{"key": "@_user_1", "id": {"open_id": "ou_bot"}, "name": "larkbot"}]


@dataclass
class Rig:
    admission: Admission
    dispatcher: Dispatcher
    handled: list[InboundMessage]
    release: anyio.Event


def admission_into(store: Store, dispatcher: Dispatcher) -> Admission:
    """Admission of the bot ``ou_bot`` into ``store`` and ``dispatcher``, at ``NOW``."""
    return Admission(
        store=store,
        dispatcher=dispatcher,
        identity=BotIdentity(open_id="ou_bot", name="larkbot"),
        policy=AdmissionPolicy(stale_after_seconds=1800),
        clock=lambda: NOW,
    )


@pytest.fixture
async def rig() -> AsyncIterator[Rig]:
    handled: list[InboundMessage] = []
    release = anyio.Event()

    async def handler(message: InboundMessage) -> None:
        await release.wait()
        handled.append(message)

    dispatcher = Dispatcher(handler, max_concurrency=4, max_backlog=3, max_per_chat=3)
    async with open_store(kind="memory", state_dir=None) as store, anyio.create_task_group() as tg:
        await tg.start(dispatcher.run)
        yield Rig(admission_into(store, dispatcher), dispatcher, handled, release)
        tg.cancel_scope.cancel()


def _count(outcome: str, event_type: str = "im.message.receive_v1") -> float:
    value = metrics.REGISTRY.get_sample_value(
        "larkbot_events_received_total", {"event_type": event_type, "outcome": outcome}
    )
    return value or 0.0


async def test_p2p_message_is_accepted(rig: Rig) -> None:
    before = _count("accepted")
    assert (await rig.admission(_frame(_event()))).code == 200
    assert rig.dispatcher.backlog == 1
    assert _count("accepted") == before + 1


async def test_duplicate_is_acked_and_dropped(rig: Rig) -> None:
    assert (await rig.admission(_frame(_event("om_dup")))).code == 200
    assert (await rig.admission(_frame(_event("om_dup")))).code == 200
    assert rig.dispatcher.backlog == 1


@pytest.mark.parametrize(
    ("event", "outcome"),
    [
        (_event(sender="ou_bot"), "self"),
        (_event(sender="ou_other_app", sender_type="app"), "self"),
        (_event(age=timedelta(minutes=31)), "stale"),
        (_event(chat_type="group"), "unmentioned"),
        (
            _event(chat_type="group", mentions=[{"key": "@_all", "id": {}, "name": "all"}]),
            "unmentioned",
        ),
        (
            _event(
                chat_type="group",
                mentions=[{"key": "@_user_1", "id": {"open_id": "ou_x"}, "name": "larkbot"}],
            ),
            "unmentioned",
        ),
    ],
    ids=["self", "other-bot", "stale", "group-no-mention", "at-all", "name-only"],
)
async def test_skipped_messages(rig: Rig, event: dict[str, Any], outcome: str) -> None:
    before = _count(outcome)
    assert (await rig.admission(_frame(event))).code == 200
    assert rig.dispatcher.backlog == 0
    assert _count(outcome) == before + 1


async def test_group_mention_of_the_bot_is_accepted(rig: Rig) -> None:
    assert (
        await rig.admission(_frame(_event(chat_type="group", mentions=BOT_MENTION)))
    ).code == 200
    assert rig.dispatcher.backlog == 1


async def test_at_all_counts_when_configured(rig: Rig) -> None:
    rig.admission.policy = AdmissionPolicy(respond_to_mention_all=True)
    event = _event(chat_type="group", mentions=[{"key": "@_all", "id": {}, "name": "all"}])
    assert (await rig.admission(_frame(event))).code == 200
    assert rig.dispatcher.backlog == 1


async def test_allowlists(rig: Rig) -> None:
    rig.admission.policy = AdmissionPolicy(
        allowed_users=frozenset({"ou_ok"}), allowed_chats=frozenset({"oc_ok"})
    )
    await rig.admission(_frame(_event("m1", sender="ou_ok", chat_id="oc_other")))
    await rig.admission(_frame(_event("m2", sender="ou_no", chat_id="oc_ok")))
    assert rig.dispatcher.backlog == 0
    await rig.admission(_frame(_event("m3", sender="ou_ok", chat_id="oc_ok")))
    assert rig.dispatcher.backlog == 1


async def test_full_backlog_answers_non_200_and_does_not_mark_seen(rig: Rig) -> None:
    for i in range(3):
        assert (await rig.admission(_frame(_event(f"om_{i}", chat_id=f"oc_{i}")))).code == 200
    assert (await rig.admission(_frame(_event("om_late", chat_id="oc_9")))).code == ACK_OVERLOADED
    rig.release.set()
    with anyio.fail_after(5):
        await rig.dispatcher.wait_idle()
    # Re-delivered later, it is taken: the refusal did not mark it seen.
    assert (await rig.admission(_frame(_event("om_late", chat_id="oc_9")))).code == 200
    with anyio.fail_after(5):
        await rig.dispatcher.wait_idle()
    assert [m.message_id for m in rig.handled][-1] == "om_late"


@pytest.mark.parametrize(
    "frame",
    [
        _frame(b"\x00\x01garbage"),
        _frame(b"{}"),
        _frame(_event(event_type="im.chat.member.user.added_v1")),
        _frame(_event(), frame_type="card"),
        _frame(b"x" * 2_000_000),
    ],
    ids=["garbage", "no-header", "unknown-type", "card", "oversized"],
)
async def test_bad_or_unsupported_frames_are_acked_and_dropped(
    rig: Rig, frame: InboundFrame
) -> None:
    assert (await rig.admission(frame)).code == 200
    assert rig.dispatcher.backlog == 0
