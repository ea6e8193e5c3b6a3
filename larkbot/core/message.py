"""The inbound chat message: what dispatch, the agent, the answering stage and the store
work on, parsed once at the edge by admission."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ALL_MENTION_KEY", "InboundMessage", "Mention", "UserId"]

ALL_MENTION_KEY = "@_all"


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class UserId(_Model):
    """The ids Lark gives a user or bot; ``open_id`` is the one we match on."""

    open_id: str | None = None
    union_id: str | None = None
    user_id: str | None = None


class Mention(_Model):
    """One @mention; ``key`` (``@_user_1``) is its placeholder in the text."""

    key: str
    id: UserId = Field(default_factory=UserId)
    name: str = ""


class InboundMessage(_Model):
    """A chat message admitted for an answer: what dispatch and the agent work on."""

    message_id: str
    event_id: str
    chat_id: str
    chat_type: Literal["p2p", "group"] | str
    message_type: str
    text: str
    sender_open_id: str
    root_id: str | None = None
    thread_id: str | None = None
    created_at: datetime
    mentions_bot: bool = False
    mentions_all: bool = False
    mentions: tuple[Mention, ...] = Field(
        default=(), description="users @mentioned in the message, the bot excluded"
    )
    merged_ids: tuple[str, ...] = Field(
        default=(),
        description="earlier messages of a burst answered together with this one (burst merge)",
    )

    @property
    def answered_ids(self) -> tuple[str, ...]:
        """Every chat message this one answers: the merged burst, then itself."""
        return (*self.merged_ids, self.message_id)

    @classmethod
    def merge(cls, burst: list[InboundMessage]) -> InboundMessage:
        """One message standing for a burst from one user: texts joined, answered on the last."""
        if len(burst) == 1:
            return burst[0]
        last = burst[-1]
        return last.model_copy(
            update={
                "text": "\n".join(m.text for m in burst if m.text),
                "merged_ids": tuple(m.message_id for m in burst[:-1]),
                "mentions": tuple(x for m in burst for x in m.mentions),
            }
        )

    @property
    def in_thread(self) -> bool:
        """True when the message sits in a group topic thread."""
        return self.thread_id is not None

    @property
    def conversation_key(self) -> str:
        """One conversation per p2p chat, and per thread (chat + root message) in groups."""
        if self.chat_type == "group" and (self.root_id or self.thread_id):
            return f"{self.chat_id}:{self.root_id or self.thread_id}"
        return self.chat_id
