"""The inbox's vocabulary: the status of an accepted message and its stored record."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from larkbot.core.message import InboundMessage

__all__ = ["InboxStatus", "StoredMessage"]


class InboxStatus(StrEnum):
    """Where an accepted message stands.

    ``pending`` from admission until the reply is settled; ``done`` once the platform
    accepted the reply; ``failed`` when the reply finally failed (kept for inspection);
    ``expired`` when a restart found it too old to answer.
    """

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """One inbox item: the accepted message as admitted, and what became of it."""

    message: InboundMessage
    status: InboxStatus
    admitted_at: datetime
    updated_at: datetime
    reason: str | None = None
