"""The in-process store: for tests and ``store = "memory"``; a restart forgets everything."""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime

from cachetools import TTLCache

from larkbot.core.message import InboundMessage
from larkbot.store.confirmations import ConfirmationMove, PendingWrite
from larkbot.store.inbox import InboxStatus, StoredMessage
from larkbot.store.ledger import Store
from larkbot.store.streamed import StreamedCard

__all__ = ["MemoryStore"]

_PRUNABLE = (InboxStatus.DONE, InboxStatus.EXPIRED)


class MemoryStore(Store):
    """Ledger in a bounded :class:`cachetools.TTLCache`, inbox in a dict.

    The ledger evicts its oldest entry as soon as it is full and forgets entries after the
    TTL; an id still in the inbox stays a duplicate either way. Nothing outlives the
    process, so :meth:`unfinished` never has a previous process to take over from.
    """

    kind = "memory"
    path = None
    durable = False

    def __init__(
        self, *, ledger_ttl_seconds: float, ledger_max_entries: int, prune_interval: float
    ) -> None:
        super().__init__(
            ledger_ttl_seconds=ledger_ttl_seconds,
            ledger_max_entries=ledger_max_entries,
            prune_interval=prune_interval,
        )
        # Wall-clock timer, so prune(now=...) and the SQLite store agree on what "old" means.
        self._ledger: TTLCache[str, float] = TTLCache(
            maxsize=self._max_entries, ttl=self._ttl, timer=time.time
        )
        self._inbox: dict[str, StoredMessage] = {}
        self._confirmations: dict[str, PendingWrite] = {}
        self._streamed: dict[str, StreamedCard] = {}

    async def admit(self, message: InboundMessage) -> bool:
        """Record ``message`` as seen and pending; ``False`` when it was seen before."""
        message_id = message.message_id
        if message_id in self._ledger or message_id in self._inbox:
            return False
        now = datetime.now(UTC)
        self._ledger[message_id] = now.timestamp()
        self._inbox[message_id] = StoredMessage(
            message=message, status=InboxStatus.PENDING, admitted_at=now, updated_at=now
        )
        return True

    async def mark_done(self, message_id: str) -> None:
        """Settle an inbox item whose reply the platform accepted."""
        self._settle(message_id, InboxStatus.DONE, None)

    async def mark_failed(self, message_id: str, reason: str) -> None:
        """Keep an inbox item whose reply finally failed, with a short ``reason``."""
        self._settle(message_id, InboxStatus.FAILED, self._clean_reason(reason))

    async def unfinished(
        self, max_age_seconds: float, now: datetime | None = None
    ) -> tuple[list[InboundMessage], list[InboundMessage]]:
        """Return ``([], [])``: every pending item belongs to this, the only, process."""
        return [], []

    async def depth(self) -> int:
        """Count the pending inbox items."""
        return sum(item.status is InboxStatus.PENDING for item in self._inbox.values())

    async def lookup(self, message_id: str) -> StoredMessage | None:
        """Return the inbox item of ``message_id``, or ``None`` when there is none."""
        return self._inbox.get(message_id)

    async def prune(self, now: datetime | None = None) -> int:
        """Drop ledger entries and settled inbox items older than the TTL."""
        moment = self._timestamp(now)
        removed = len(self._ledger.expire(moment))
        cutoff = moment - self._ttl
        old = [
            message_id
            for message_id, item in self._inbox.items()
            if item.status in _PRUNABLE and item.updated_at.timestamp() < cutoff
        ]
        for message_id in old:
            del self._inbox[message_id]
            self._streamed.pop(message_id, None)
        return removed + len(old)

    def _settle(self, message_id: str, status: InboxStatus, reason: str | None) -> None:
        item = self._inbox.get(message_id)
        # A done item stays done: a late failure report cannot un-send a reply.
        if item is None or item.status is InboxStatus.DONE:
            return
        self._inbox[message_id] = dataclasses.replace(
            item, status=status, reason=reason, updated_at=datetime.now(UTC)
        )

    async def add_confirmation(self, pending: PendingWrite) -> None:
        """Keep a new pending write confirmation."""
        self._confirmations[pending.id] = pending

    async def confirmation(self, confirmation_id: str) -> PendingWrite | None:
        """The confirmation as it stands now, or ``None``."""
        return self._confirmations.get(confirmation_id)

    async def settle_confirmation(self, move: ConfirmationMove) -> bool:
        """Make ``move`` if the confirmation stands as it expects (no await: atomic)."""
        pending = self._confirmations.get(move.confirmation_id)
        if pending is None or not move.applies_to(pending):
            return False
        self._confirmations[move.confirmation_id] = move.applied(pending)
        return True

    async def streamed_card(self, message_id: str) -> StreamedCard | None:
        """The streamed card of the answer to ``message_id``, if an attempt kept one."""
        return self._streamed.get(message_id)

    async def keep_streamed_card(self, message_id: str, card: StreamedCard) -> None:
        """Keep (or replace) the streamed card of the answer to ``message_id``."""
        self._streamed[message_id] = card
