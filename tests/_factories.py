"""Small builders shared by tests."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count

from larkbot.core.message import InboundMessage

_ids = count(1)


def inbound(
    chat_id: str = "oc_1",
    text: str = "hi",
    *,
    message_id: str | None = None,
    created_at: datetime | None = None,
) -> InboundMessage:
    """An admitted message, as dispatch and the agent see it."""
    return InboundMessage(
        message_id=message_id or f"om_{next(_ids)}",
        event_id="ev",
        chat_id=chat_id,
        chat_type="p2p",
        message_type="text",
        text=text,
        sender_open_id="ou_user",
        created_at=created_at or datetime.now(UTC),
    )
