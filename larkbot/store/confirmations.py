"""Pending write confirmations: what a requester is asked to approve, and its state.

A confirmation moves from ``pending`` to exactly one of ``approving`` (then ``done`` or
``failed``), ``cancelled`` or ``expired``. Every move (a :class:`ConfirmationMove`) is a
compare-and-set in the store (:meth:`~larkbot.store.ledger.Store.settle_confirmation`), so
of any number of clicks, redeliveries or replicas, exactly one wins each move and the write
runs once.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ConfirmationMove", "ConfirmationState", "PendingWrite"]


class ConfirmationState(enum.StrEnum):
    """Where a confirmation stands."""

    PENDING = "pending"
    APPROVING = "approving"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


class PendingWrite(BaseModel):
    """One write tool call waiting for its requester's approval.

    ``arguments`` are the tool's validated arguments as JSON data; ``change`` is the
    markdown the card shows (tool, target, each field before → after); ``outcome`` is the
    result's sentence once settled. Times are seconds since the epoch.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=1)
    tool: str
    arguments: dict[str, Any]
    requester: str
    caller: str = ""
    chat_id: str
    conversation_key: str = ""
    message_id: str
    language: str
    change: str
    created_at: float
    expires_at: float
    state: ConfirmationState = ConfirmationState.PENDING
    outcome: str = ""


@dataclass(frozen=True, slots=True)
class ConfirmationMove:
    """One step of a confirmation: from ``expected`` to ``state``, with the result's sentence.

    A store makes the move only while the confirmation is still in ``expected``.
    """

    confirmation_id: str
    expected: ConfirmationState
    state: ConfirmationState
    outcome: str = ""
