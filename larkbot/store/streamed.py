"""The streamed card of an answer in progress, kept so the next attempt continues it.

A streamed answer is a CardKit card sent as the reply under the uuid of the answer's
first message. An attempt that dies half way (a crash, a replica losing its lease) leaves
the card behind; the next attempt must put the answer into that same card, because
replying again under that uuid only returns the message Lark already has. So the card id
is kept before the card is sent, with a ceiling on the ``sequence`` numbers its operations
used: the next attempt numbers its own operations above it, as CardKit requires.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["StreamedCard"]


class StreamedCard(BaseModel):
    """The card of one streamed answer, as its attempts left it.

    :ivar card_id: the CardKit card entity.
    :ivar sequence_ceiling: no operation on the card used a higher ``sequence``.
    :ivar finished: the whole answer is in the card and streaming is closed.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    card_id: str = Field(min_length=1)
    sequence_ceiling: int = Field(ge=0)
    finished: bool = False
