"""The store's contract: a seen-message ledger and an inbox of accepted messages.

Lark delivers every event at least once and retries for hours, and replicas, restarts and
crashes happen. The store is what turns that into "answered exactly once":

- :meth:`Store.admit` runs before an event is acked. It records the message id in the
  ledger and the whole message in the inbox, in one transaction, or reports a duplicate.
- :meth:`Store.mark_done` / :meth:`Store.mark_failed` settle an inbox item once its reply
  is accepted or has finally failed.
- :meth:`Store.unfinished` hands a starting process the pending items a previous process
  acked but never settled (a crash between ack and reply), and expires the stale ones.
- :meth:`Store.pending_messages` reads pending items back, for messages dispatch kept
  in the store while its backlog was full (a durable store only).
- :meth:`Store.run_pruner` keeps the ledger and inbox bounded.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import anyio

from larkbot.core.errors import EX_CONFIG, LarkbotError
from larkbot.core.message import InboundMessage
from larkbot.core.redact import redact
from larkbot.store.confirmations import ConfirmationMove, PendingWrite
from larkbot.store.inbox import StoredMessage
from larkbot.store.streamed import StreamedCard

__all__ = ["Store", "StoreError"]

logger = logging.getLogger("larkbot.store")

_REASON_LIMIT = 500


class StoreError(LarkbotError):
    """The store cannot be used; ``str()`` is one sentence that tells the operator what to do."""

    exit_code = EX_CONFIG


class Store(ABC):
    """Seen-message ledger and inbox; open one with :func:`larkbot.store.open_store`.

    ``kind`` is ``"sqlite"`` or ``"memory"``; ``path`` is the database file, or ``None``;
    ``durable`` says whether the inbox outlives the process (only then may dispatch keep
    messages in it beyond its backlog).
    """

    kind: str
    path: Path | None
    durable: bool

    def __init__(
        self, *, ledger_ttl_seconds: float, ledger_max_entries: int, prune_interval: float
    ) -> None:
        if ledger_ttl_seconds <= 0 or ledger_max_entries < 1 or prune_interval <= 0:
            raise ValueError(
                "ledger_ttl_seconds and prune_interval must be positive and "
                "ledger_max_entries at least 1"
            )
        self._ttl = float(ledger_ttl_seconds)
        self._max_entries = int(ledger_max_entries)
        self._prune_interval = float(prune_interval)

    @abstractmethod
    async def admit(self, message: InboundMessage) -> bool:
        """Record ``message`` as seen and pending; ``False`` when it was seen before.

        Atomic, also across processes sharing the store: of any number of concurrent
        admits of one message id, exactly one returns ``True``. Call it before the ack.
        """

    @abstractmethod
    async def mark_done(self, message_id: str) -> None:
        """Settle an inbox item whose reply the platform accepted."""

    @abstractmethod
    async def mark_failed(self, message_id: str, reason: str) -> None:
        """Keep an inbox item whose reply finally failed, with a short ``reason``.

        ``reason`` is trimmed to one line of at most 500 characters, and values that look
        like credentials (``Bearer ...``, ``token=...``) are masked before it is stored.
        """

    @abstractmethod
    async def unfinished(
        self, max_age_seconds: float, now: datetime | None = None
    ) -> tuple[list[InboundMessage], list[InboundMessage]]:
        """Take over the pending items of processes that are gone: ``(resumable, expired)``.

        An item whose chat message was created more than ``max_age_seconds`` before
        ``now`` is marked expired and returned in the second list (the caller logs it);
        the others, oldest first, are now this store's to answer. Items of this store and
        of live processes are never returned, so calling this again is harmless.
        """

    async def pending_messages(
        self, message_ids: Sequence[str], max_age_seconds: float, now: datetime | None = None
    ) -> tuple[list[InboundMessage], list[InboundMessage]]:
        """This store's pending messages of ``message_ids``: ``(pending, expired)``.

        One read for many ids: dispatch moves messages it spilled to the store back with
        it. The pending ones come in the order given; ids not pending in this store
        (settled, unknown, or taken over by another process) are left out. An item created
        more than ``max_age_seconds`` before ``now`` is marked expired and returned in the
        second list instead, as :meth:`unfinished` does.
        """
        raise StoreError(f"the {self.kind} store does not keep messages beyond the backlog")

    @abstractmethod
    async def depth(self) -> int:
        """Count the pending inbox items (of every process sharing the store)."""

    @abstractmethod
    async def lookup(self, message_id: str) -> StoredMessage | None:
        """Return the inbox item of ``message_id``, or ``None`` when there is none."""

    @abstractmethod
    async def prune(self, now: datetime | None = None) -> int:
        """Drop old entries and return how many went.

        Ledger entries older than the TTL go, then the oldest beyond ``ledger_max_entries``;
        ``done`` and ``expired`` inbox items settled longer than the TTL ago go too.
        ``failed`` items stay for inspection.
        """

    async def add_confirmation(self, pending: PendingWrite) -> None:
        """Keep a new pending write confirmation (its id is fresh and unique)."""
        raise StoreError(f"the {self.kind} store does not keep write confirmations")

    async def confirmation(self, confirmation_id: str) -> PendingWrite | None:
        """The confirmation ``confirmation_id`` as it stands now, or ``None``."""
        raise StoreError(f"the {self.kind} store does not keep write confirmations")

    async def settle_confirmation(self, move: ConfirmationMove) -> bool:
        """Make ``move`` if the confirmation stands as it expects; ``False`` if it did not.

        It expects ``move.expected`` and, with ``move.expected_since``, that attempt.

        Atomic, also across processes and replicas: of concurrent moves from one state,
        exactly one returns ``True``.
        """
        raise StoreError(f"the {self.kind} store does not keep write confirmations")

    async def streamed_card(self, message_id: str) -> StreamedCard | None:
        """The streamed card of the answer to ``message_id``, if an attempt kept one."""
        return None

    async def keep_streamed_card(self, message_id: str, card: StreamedCard) -> None:  # noqa: B027 (optional: keeping none is valid)
        """Keep (or replace) the streamed card of the answer to ``message_id``.

        A store that keeps none (the default) leaves a resumed answer to stream anew.
        """

    async def run_pruner(self) -> None:
        """Prune now and every ``prune_interval`` seconds until cancelled.

        Run it in the daemon's task group for the store's whole life; a failed prune is
        logged and retried at the next interval.
        """
        while True:
            try:
                removed = await self.prune()
            except StoreError as exc:
                logger.warning(
                    "pruning the store failed, next try in %.0f s: %s", self._prune_interval, exc
                )
            else:
                if removed:
                    logger.info("pruned %d old ledger and inbox entries", removed)
            await anyio.sleep(self._prune_interval)

    @staticmethod
    def _timestamp(moment: datetime | None) -> float:
        """Seconds since the epoch of ``moment`` (naive means UTC), or of now."""
        if moment is None:
            return time.time()
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()

    @staticmethod
    def _clean_reason(reason: str) -> str:
        """One line, credentials masked, at most 500 characters."""
        line = " ".join(reason.split())
        # A failure reason comes from exception text, which can quote a header or a body.
        line = redact(line)
        if len(line) > _REASON_LIMIT:
            line = line[: _REASON_LIMIT - 1] + "…"
        return line
