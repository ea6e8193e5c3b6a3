"""What the Redis store hands out: work items, decisions, health and inventory figures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum, IntEnum, StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict

from larkbot.core.message import InboundMessage

__all__ = [
    "KEEP",
    "BackupSummary",
    "CachedAnswer",
    "ConversationChange",
    "FinishChange",
    "FinishOutcome",
    "IntakeResult",
    "MessageState",
    "PartitionBacklog",
    "RateDecision",
    "RedisServerInfo",
    "RestoreSummary",
    "StateCounts",
    "WorkItem",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


@dataclass(frozen=True, slots=True)
class IntakeResult:
    """What intake did with one message: queued it (``entry_id`` set) or knew it already."""

    message_id: str
    partition: int
    entry_id: str | None

    @property
    def new(self) -> bool:
        """True when this call admitted the message; False for a duplicate."""
        return self.entry_id is not None


@dataclass(frozen=True, slots=True)
class WorkItem:
    """A message handed to this replica to answer, with what its fenced finish needs.

    :ivar owner: the replica's owner id; ``owner|epoch`` is the fencing token.
    :ivar epoch: the lease epoch the item was read under.
    :ivar entry_id: the stream entry id (its order within the partition).
    :ivar delivery_count: how many times an owner was handed this entry (1 the first time).
    :ivar dead_lettered: the entry was delivered too often and moved to the dead-letter
        stream; it is already settled, and the caller should only apologise to the user.
    """

    message: InboundMessage
    partition: int
    entry_id: str
    owner: str
    epoch: int
    delivery_count: int
    dead_lettered: bool = False

    @property
    def token(self) -> str:
        """The fencing token ``owner|epoch`` the partition's lease must hold at finish."""
        return f"{self.owner}|{self.epoch}"


class FinishOutcome(IntEnum):
    """What a fenced finish did."""

    FENCED = 0
    """The lease is held by another owner (or by none): nothing was written."""
    FINISHED = 1
    """Turns appended, messages marked done, stream entries acknowledged and removed."""
    ALREADY_DONE = 2
    """An earlier call finished the same message; entries are acknowledged, nothing doubled."""


class MessageState(StrEnum):
    """Where a message stands in the store."""

    UNKNOWN = "unknown"
    PENDING = "pending"
    DONE = "done"


class _Keep(Enum):
    KEEP = "keep"


KEEP = _Keep.KEEP
"""A :class:`FinishChange`'s ``language`` or ``profile``: leave it as it is."""


@dataclass(frozen=True, slots=True)
class FinishChange:
    """What a finish writes into the conversation, besides settling the messages.

    :ivar user_text: the user turn to append (``None``: none).
    :ivar answer_text: the answer turn to append (``None``: none).
    :ivar conversation_key: the conversation written (``None``: the first item's).
    :ivar language: the conversation's language afterwards (:data:`KEEP`: as it is,
        ``None``: cleared).
    :ivar profile: the conversation's profile afterwards (:data:`KEEP`: as it is,
        ``None``: cleared).
    :ivar reset: empty the history before appending (the ``reset`` command).
    """

    user_text: str | None = None
    answer_text: str | None = None
    conversation_key: str | None = None
    language: str | _Keep | None = KEEP
    profile: str | _Keep | None = KEEP
    reset: bool = False


class ConversationChange(_Frozen):
    """What answering a message does to its conversation, as the fenced finish applies it.

    :ivar user_text: the user turn to append, or ``None`` (commands are not recorded).
    :ivar answer_text: the answer turn to append, or ``None``.
    :ivar reset: empty the history before appending (the ``reset`` command).
    :ivar language: the conversation's language afterwards (``None``: automatic).
    :ivar profile: the conversation's profile afterwards (``None``: the default).
    """

    user_text: str | None = None
    answer_text: str | None = None
    reset: bool = False
    language: str | None = None
    profile: str | None = None

    def finish_change(self) -> FinishChange:
        """This change as the finish applies it (the language and profile are set, not kept)."""
        return FinishChange(
            user_text=self.user_text,
            answer_text=self.answer_text,
            reset=self.reset,
            language=self.language,
            profile=self.profile,
        )


class CachedAnswer(_Frozen):
    """An answer generated for a message, kept until the message is finished.

    ``card`` is the card the answer is sent as (card JSON 2.0), if any. ``change`` is what
    the answer does to the conversation (``None``: nothing), kept with the text so that an
    owner reusing the answer records exactly what the first one would.
    """

    text: str
    markdown: bool = False
    card: dict[str, Any] | None = None
    generated_at: datetime
    change: ConversationChange | None = None


@dataclass(frozen=True, slots=True)
class RateDecision:
    """A rate-limit verdict: allowed, or how long until a call would be."""

    allowed: bool
    retry_after: float
    remaining: int


class PartitionBacklog(_Frozen):
    """One partition's queue: entries not yet finished, how many are out, the oldest's age."""

    partition: int
    length: int
    pending: int
    oldest_age_seconds: float | None


class RedisServerInfo(_Frozen):
    """What doctor needs to know about the Redis server."""

    version: str
    server: str
    mode: str
    role: str
    maxmemory_policy: str
    aof_enabled: bool
    appendfsync: str | None
    rdb_save: str | None
    used_memory_bytes: int
    maxmemory_bytes: int

    @property
    def persistent(self) -> bool:
        """True when Redis writes data to disk (AOF, or RDB snapshots)."""
        return self.aof_enabled or bool(self.rdb_save)

    def problems(self) -> list[str]:
        """One sentence per setting that puts admitted messages at risk (empty: fine)."""
        found: list[str] = []
        major_minor = tuple(int(p) for p in self.version.split(".")[:2] if p.isdigit())
        if major_minor < (6, 2):
            found.append(
                f"Redis {self.version} is too old: larkbot needs 6.2 or later (XAUTOCLAIM)"
            )
        if self.maxmemory_policy != "noeviction":
            found.append(
                f"maxmemory-policy is {self.maxmemory_policy}: set it to noeviction, or Redis "
                "may evict queued messages and dedup markers under memory pressure"
            )
        if not self.aof_enabled:
            found.append(
                "AOF is off (appendonly no): set appendonly yes (appendfsync everysec) so a "
                "restart of Redis keeps every acknowledged message"
            )
        if self.role not in ("master", "primary"):
            found.append(f"this Redis is a {self.role}: point REDIS_URL at the primary")
        return found


class StateCounts(_Frozen):
    """Counts of our keys, for ``larkbot state inspect``."""

    seen: int
    done: int
    answers: int
    conversations: int
    dead_letters: int
    pending: dict[int, int]
    queued: dict[int, int]
    members: list[str]
    leases: dict[int, str]


class BackupSummary(_Frozen):
    """What a backup wrote."""

    keys: int
    partitions: int
    bytes: int


class RestoreSummary(_Frozen):
    """What a restore did: keys restored, kept (already there), expired, messages marked seen."""

    restored: int
    kept: int
    expired: int
    marked_seen: int
