"""Pending write confirmations: what a requester is asked to approve, and its state.

A confirmation moves from ``pending`` to exactly one of ``approving`` (then ``done`` or
``failed``), ``cancelled`` or ``expired``. Every move (a :class:`ConfirmationMove`) is a
compare-and-set in the store (:meth:`~larkbot.store.ledger.Store.settle_confirmation`), so
of any number of clicks, redeliveries or replicas, exactly one wins each move and the write
runs once.

An ``approving`` confirmation records when its attempt began (``approving_since``): one
whose process died mid-write can be taken over by a later attempt, a move from
``approving`` to ``approving`` that only the attempt it names can win, and only the
current attempt may settle it.
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
    result's sentence once settled. ``approved_at`` is when it was first approved,
    ``approving_since`` when the latest attempt at the write began. Times are seconds since
    the epoch.
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
    approved_at: float | None = None
    approving_since: float | None = None


@dataclass(frozen=True, slots=True)
class ConfirmationMove:
    """One step of a confirmation: from ``expected`` to ``state``, with the result's sentence.

    A store makes the move only while the confirmation is still in ``expected`` and, when
    ``expected_since`` is given, its attempt is still the one that began then.
    ``approving_since`` starts an attempt (with ``state`` approving): it becomes the
    confirmation's ``approving_since``, and its ``approved_at`` if it had none.
    """

    confirmation_id: str
    expected: ConfirmationState
    state: ConfirmationState
    outcome: str = ""
    expected_since: float | None = None
    approving_since: float | None = None

    def applies_to(self, pending: PendingWrite) -> bool:
        """Whether this move may be made on ``pending`` as it stands."""
        return pending.state == self.expected and (
            self.expected_since is None or pending.approving_since == self.expected_since
        )

    def applied(self, pending: PendingWrite) -> PendingWrite:
        """``pending`` after this move."""
        since = self.approving_since
        return pending.model_copy(
            update={
                "state": self.state,
                "outcome": self.outcome,
                "approving_since": pending.approving_since if since is None else since,
                "approved_at": pending.approved_at if pending.approved_at is not None else since,
            }
        )
