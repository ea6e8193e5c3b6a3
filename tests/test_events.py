"""Event parsing at the edge: typed models, text extraction, bad input."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from larkbot.admission.events import (
    MESSAGE_RECEIVE,
    extract_text,
    message_from_event,
    parse_envelope,
)
from larkbot.core.message import InboundMessage


def _event(
    *,
    text: str = "hello",
    chat_type: str = "p2p",
    mentions: list[dict[str, Any]] | None = None,
    message_type: str = "text",
    content: Any = None,
    root_id: str | None = None,
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "message_id": "om_1",
        "create_time": "1700000000000",
        "chat_id": "oc_1",
        "chat_type": chat_type,
        "message_type": message_type,
        "content": json.dumps(content if content is not None else {"text": text}),
        "mentions": mentions or [],
    }
    if root_id:
        message["root_id"] = root_id
    return {
        "schema": "2.0",
        "header": {
            "event_id": "ev1",
            "event_type": MESSAGE_RECEIVE,
            "create_time": "1700000000000",
        },
        "event": {
            "sender": {"sender_id": {"open_id": "ou_user"}, "sender_type": "user"},
            "message": message,
        },
    }


def _parse(event: dict[str, Any], bot: str | None = "ou_bot") -> InboundMessage:
    return message_from_event(parse_envelope(json.dumps(event).encode()), bot)


def test_text_message_is_typed() -> None:
    message = _parse(_event(text="hi there"))
    assert message.message_id == "om_1"
    assert message.text == "hi there"
    assert message.sender_open_id == "ou_user"
    assert message.created_at.year == 2023
    assert message.conversation_key == "oc_1"


def test_bot_mention_is_stripped_and_others_named() -> None:
    mentions = [
        {"key": "@_user_1", "id": {"open_id": "ou_bot"}, "name": "larkbot"},
        {"key": "@_user_2", "id": {"open_id": "ou_tom"}, "name": "Tom"},
    ]
    message = _parse(_event(text="@_user_1 who is @_user_2", chat_type="group", mentions=mentions))
    assert message.mentions_bot
    assert message.text == "who is @Tom"
    assert [m.id.open_id for m in message.mentions] == ["ou_tom"]


def test_display_name_alone_is_not_a_mention() -> None:
    mentions = [{"key": "@_user_1", "id": {"open_id": "ou_other"}, "name": "larkbot"}]
    message = _parse(_event(text="@_user_1 hi", chat_type="group", mentions=mentions))
    assert not message.mentions_bot


def test_at_all_is_flagged() -> None:
    mentions = [{"key": "@_all", "id": {}, "name": "all"}]
    message = _parse(_event(text="@_all standup", chat_type="group", mentions=mentions))
    assert message.mentions_all and not message.mentions_bot
    assert message.text == "standup"


def test_post_rich_text_is_flattened() -> None:
    post = {
        "title": "Report",
        "content": [
            [{"tag": "text", "text": "find "}, {"tag": "a", "text": "Acme", "href": "https://x"}],
            [
                {"tag": "at", "user_id": "ou_bot", "user_name": "larkbot"},
                {"tag": "text", "text": " ok"},
            ],
        ],
    }
    mentions = [{"key": "@_user_1", "id": {"open_id": "ou_bot"}, "name": "larkbot"}]
    message = _parse(_event(message_type="post", content=post, mentions=mentions))
    assert message.text == "Report\nfind Acme\nok"


def test_post_with_locale_wrapper() -> None:
    post = {"ja_jp": {"title": "", "content": [[{"tag": "text", "text": "こんにちは"}]]}}
    assert _parse(_event(message_type="post", content=post)).text == "こんにちは"


def test_group_thread_conversation_key() -> None:
    message = _parse(_event(chat_type="group", root_id="om_root"))
    assert message.conversation_key == "oc_1:om_root"


@pytest.mark.parametrize(
    "kind", ["image", "file", "audio", "sticker", "merge_forward", "interactive"]
)
def test_non_text_messages_have_no_text(kind: str) -> None:
    message = _parse(_event(message_type=kind, content={"image_key": "img_x"}))
    assert message.message_type == kind and message.text == ""


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"\xff\xfe", "not JSON"),
        (b"{not json", "not JSON"),
        (b"[]", "no header"),
        (b'{"header": {}}', "event_type"),
        (json.dumps({"header": {"event_type": MESSAGE_RECEIVE}, "event": {}}).encode(), "sender"),
    ],
)
def test_bad_payloads_give_a_reason(payload: bytes, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_envelope(payload)


@pytest.mark.parametrize(
    ("where", "number"),
    [
        ("header", "1e400"),
        ("header", "-1e400"),
        ("message", "1e400"),
        ("message", "-1e400"),
        ("message", "1e300"),
        ("message", "170000000000000000000000000000000"),
    ],
)
def test_timestamps_no_date_can_hold_give_a_reason(where: str, number: str) -> None:
    # Regression: 1e400 (infinity once parsed) raised OverflowError, which admission does
    # not expect from a bad payload, and a huge message time failed later, building the
    # message's date.
    event = _event()
    (event["header"] if where == "header" else event["event"]["message"])["create_time"] = "@"
    payload = json.dumps(event).replace('"@"', number).encode()
    with pytest.raises(ValueError, match="create_time"):
        parse_envelope(payload)


def test_unknown_event_types_parse_without_body() -> None:
    envelope = parse_envelope(b'{"header": {"event_type": "im.chat.updated_v1", "event_id": "e"}}')
    assert envelope.message_event is None


def test_broken_content_yields_empty_text() -> None:
    event = _event()
    event["event"]["message"]["content"] = "{broken"
    assert _parse(event).text == ""


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.binary(max_size=300))
def test_parser_fuzz_bytes(payload: bytes) -> None:
    with contextlib.suppress(ValueError):
        parse_envelope(payload)


@given(_json)
def test_parser_fuzz_json_structures(doc: object) -> None:
    with contextlib.suppress(ValueError):
        parse_envelope(json.dumps(doc).encode())


@given(_json, st.sampled_from(["text", "post"]))
def test_text_extraction_fuzz(content: object, kind: str) -> None:
    event = _event(message_type=kind, content=content)
    envelope = parse_envelope(json.dumps(event).encode())
    assert envelope.message_event is not None
    assert isinstance(extract_text(envelope.message_event.message, "ou_bot"), str)
