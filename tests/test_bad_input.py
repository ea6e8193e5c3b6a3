"""Bad input through the real daemon and the local Lark: never a crash, never a stuck socket.

After each bad frame, payload or message, an ordinary message is still answered. Frames
that cannot be a chat message are acked with 200 and get no reply (re-delivery would
bring the same bytes); chat messages the bot cannot read get a polite reply.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from larkbot.agent.i18n import translate
from larkbot.daemon import Daemon
from larkbot.sources.longconn.frames import Frame, FrameMethod, encode_frame
from larkbot.testing import LarkStandIn
from tests._daemon import running_daemon, settings_for
from tests._proc import reply_text

pytestmark = pytest.mark.anyio

_MAX_PAYLOAD = 8192


@pytest.fixture(autouse=True)
def _no_errors_logged(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Bad input is the user's doing, not a fault of larkbot: nothing logged as an error."""
    with caplog.at_level(logging.INFO, logger="larkbot"):
        yield
    errors = [
        f"{r.name}: {r.getMessage()}"
        for r in caplog.records
        if r.name.startswith("larkbot") and r.levelno >= logging.ERROR
    ]
    assert not errors


@asynccontextmanager
async def _bot(tmp_path: Path) -> AsyncIterator[tuple[LarkStandIn, Daemon]]:
    """The stand-in and the daemon with its real assistant (offline brain, Japanese default)."""
    async with LarkStandIn(reconnect_interval=1, reconnect_nonce=0) as lark:
        settings = await settings_for(
            lark, tmp_path, LARKBOT_ADMISSION__MAX_PAYLOAD_BYTES=str(_MAX_PAYLOAD)
        )
        async with running_daemon(settings) as daemon:
            yield lark, daemon


async def _still_answers(lark: LarkStandIn, daemon: Daemon) -> None:
    """An ordinary message sent now is answered: the connection is not stuck."""
    await lark.wait_for(lambda: daemon.connected and lark.connections == 1, timeout=10)
    before = len(lark.replies)
    message_id = await lark.send_text("help")
    await lark.wait_for(lambda: len(lark.replies) == before + 1, timeout=10)
    assert lark.replies[-1].to_message_id == message_id


def _data_frame(payload: bytes, **headers: str) -> bytes:
    frame = Frame(SeqID=1, LogID=1, service=0, method=FrameMethod.DATA, payload=payload)
    for key, value in {"type": "event", "message_id": uuid.uuid4().hex, **headers}.items():
        header = frame.headers.add()
        header.key, header.value = key, value
    return encode_frame(frame)


def _event(event_type: str, body: dict[str, Any]) -> dict[str, Any]:
    return {
        "schema": "2.0",
        "header": {
            "event_id": uuid.uuid4().hex,
            "event_type": event_type,
            "create_time": "1700000000000",
            "token": "",
            "app_id": "cli_test",
            "tenant_key": "tenant",
        },
        "event": body,
    }


async def test_malformed_frames_leave_the_connection_working(tmp_path: Path) -> None:
    async with _bot(tmp_path) as (lark, daemon):
        for raw in (
            b"\x00\xff not protobuf",
            _data_frame(b"{}", sum="2", seq="7"),  # a fragment that cannot belong anywhere
            _data_frame(b"{}", sum="zero", seq="x"),
            encode_frame(Frame(SeqID=1, LogID=1, service=0, method=7)),
            encode_frame(Frame(SeqID=1, LogID=1, service=0, method=FrameMethod.CONTROL)),
        ):
            await lark.push_raw(raw)
        await _still_answers(lark, daemon)
        assert len(lark.replies) == 1
        assert lark.handshakes == 1, "bad frames must not cost the connection"


async def test_invalid_json_payloads_are_acked_and_dropped(tmp_path: Path) -> None:
    async with _bot(tmp_path) as (lark, daemon):
        payloads = [b"not json", b"[1, 2]", b'{"schema": "2.0"}', "\u00e9t\u00e9".encode("latin-1")]
        for payload in payloads:
            await lark.push_raw(_data_frame(payload))
        # Acks of frames the stand-in did not track land as "unmatched": each was acked.
        await lark.wait_for(lambda: lark.unmatched_acks == len(payloads))
        await _still_answers(lark, daemon)
        assert len(lark.replies) == 1


async def test_unknown_event_types_and_card_frames_get_a_200_ack_and_no_reply(
    tmp_path: Path,
) -> None:
    async with _bot(tmp_path) as (lark, daemon):
        await lark.push_event(_event("im.chat.member.bot.added_v1", {"chat_id": "oc_new"}))
        await lark.push_event(_event("im.message.message_read_v1", {"reader": {}}))
        await lark.push_event(_event("some.future.event_v9", {"anything": [1, 2, 3]}))
        await lark.push_event({"action": {"value": {"k": "v"}}}, frame_type="card")
        await lark.wait_for(lambda: len(lark.acks) == 4)
        assert [a.code for a in lark.acks] == [200, 200, 200, 200]
        await _still_answers(lark, daemon)
        assert len(lark.replies) == 1


async def test_times_no_date_can_hold_are_acked_and_not_answered(tmp_path: Path) -> None:
    # Regression: a create_time of 1e400 (infinity once parsed) raised OverflowError out of
    # parsing, logged as a handler failure and acked 500, so Lark would send it forever.
    async with _bot(tmp_path) as (lark, daemon):
        events = [lark.build_message_event("hello") for _ in range(3)]
        events[0]["header"]["create_time"] = float("inf")
        events[1]["event"]["message"]["create_time"] = float("-inf")
        events[2]["event"]["message"]["create_time"] = 10**30
        for event in events:
            await lark.push_event(event)
        await lark.wait_for(lambda: len(lark.acks) == len(events))
        assert [a.code for a in lark.acks] == [200] * len(events)
        await _still_answers(lark, daemon)
        assert len(lark.replies) == 1


async def test_oversized_payload_is_acked_and_not_answered(tmp_path: Path) -> None:
    async with _bot(tmp_path) as (lark, daemon):
        huge = await lark.send_text("x" * (_MAX_PAYLOAD * 2), fragments=3)
        await lark.wait_for(lambda: len(lark.acks) == 1)
        assert lark.acks[0].code == 200
        await _still_answers(lark, daemon)
        assert [r.to_message_id for r in lark.replies].count(huge) == 0


async def test_empty_and_mention_only_messages_get_a_polite_answer(tmp_path: Path) -> None:
    async with _bot(tmp_path) as (lark, daemon):
        empty = await lark.send_text("   ")
        mention_only = await lark.send_text("", chat_type="group", mention_bot=True)
        await lark.wait_for(lambda: len(lark.replies) == 2)
        answers = {r.to_message_id: reply_text(r) for r in lark.replies}
        assert answers == {empty: translate("empty", "ja"), mention_only: translate("empty", "ja")}
        await _still_answers(lark, daemon)


async def test_empty_message_is_answered_in_the_language_the_user_writes(tmp_path: Path) -> None:
    async with _bot(tmp_path) as (lark, _daemon):
        await lark.send_text("Could you tell me what you can do for our team today?")
        await lark.wait_for(lambda: len(lark.replies) == 1)
        empty = await lark.send_text("")
        image = await lark.send_text(message_type="image", content={"image_key": "img_v2_1"})
        await lark.wait_for(lambda: len(lark.replies) == 3)
        answers = {r.to_message_id: reply_text(r) for r in lark.replies}
        assert answers[empty] == translate("empty", "en")
        assert answers[image] == translate("non_text", "en")


@pytest.mark.parametrize(
    ("message_type", "content"),
    [
        ("image", {"image_key": "img_v2_041b28e3"}),
        ("file", {"file_key": "file_v2_9f3a", "file_name": "report.pdf"}),
        ("audio", {"file_key": "file_v2_a11d", "duration": 2300}),
        ("sticker", {"file_key": "v2_sticker_77"}),
        ("merge_forward", {"content": "Merged and Forwarded Message"}),
        ("interactive", {"title": "Card", "elements": [[{"tag": "text", "text": "hi"}]]}),
        ("media", {"file_key": "file_v2_m", "image_key": "img_v2_m", "duration": 5}),
    ],
)
async def test_non_text_messages_get_a_polite_text_only_answer(
    tmp_path: Path, message_type: str, content: dict[str, Any]
) -> None:
    async with _bot(tmp_path) as (lark, daemon):
        message_id = await lark.send_text(message_type=message_type, content=content)
        await lark.wait_for(lambda: len(lark.replies) == 1)
        assert lark.replies[0].to_message_id == message_id
        assert reply_text(lark.replies[0]) == translate("non_text", "ja")
        await _still_answers(lark, daemon)


async def test_post_rich_text_is_answered_from_its_text(tmp_path: Path) -> None:
    async with _bot(tmp_path) as (lark, _daemon):
        plain = await lark.send_text("help")
        await lark.wait_for(lambda: len(lark.replies) == 1)
        post = await lark.send_text(
            message_type="post",
            content={
                "zh_cn": {
                    "title": "",
                    "content": [
                        [{"tag": "text", "text": "help"}],
                        [{"tag": "img", "image_key": "i"}],
                    ],
                }
            },
        )
        await lark.wait_for(lambda: len(lark.replies) == 2)
        answers = {r.to_message_id: reply_text(r) for r in lark.replies}
        assert answers[post] == answers[plain]
        assert answers[post] != translate("non_text", "ja")


async def test_broken_message_content_gets_a_polite_answer(tmp_path: Path) -> None:
    async with _bot(tmp_path) as (lark, daemon):
        event = lark.build_message_event("hello")
        event["event"]["message"]["content"] = "{not json"
        await lark.push_event(event)
        event = lark.build_message_event("hello")
        event["event"]["message"]["content"] = json.dumps(["a", "list"])
        await lark.push_event(event)
        await lark.wait_for(lambda: len(lark.replies) == 2)
        assert {reply_text(r) for r in lark.replies} == {translate("empty", "ja")}
        await _still_answers(lark, daemon)
