"""The key space: partitions of chats and the names of every key we keep.

A chat belongs to partition ``crc32(chat_id) % P`` (``zlib.crc32``, never Python's salted
``hash()``, so every replica and every restart agrees). All keys of a partition carry the
hash tag ``{pNN}``, so Redis Cluster puts them in one slot and one Lua script may touch them
together (intake, the fenced finish). Layout, with the default prefix ``lb``::

    lb:{p07}:in                  stream of admitted messages (consumer group ``larkbot``)
    lb:{p07}:seen:<message_id>   intake dedup marker (PX seen TTL)
    lb:{p07}:lease               ``owner|epoch`` of the replica that answers the partition (PX)
    lb:{p07}:epoch               INCR counter: the fencing token of each new lease
    lb:{p07}:out:<message_id>    the answer generated for a message, kept until it is finished
    lb:{p07}:done:<message_id>   set by the fenced finish (PX seen TTL)
    lb:{p07}:card:<message_id>   the streamed card of an answer in progress (PX seen TTL)
    lb:{p07}:conv:<key>          conversation turns (list of JSON, LTRIM + PEXPIRE)
    lb:{p07}:convmeta:<key>      conversation language and profile (hash, same expiry)
    lb:{p07}:dlq                 stream of messages delivered too often (poison)
    lb:members                   live replicas: ZSET of owner id -> heartbeat expiry (ms)
    lb:layout                    ``partitions=64``: every replica must agree on P
    lb:{rl:<open_id>}:msg|write  per-user rate limit windows (ZSET of call times)

P cannot change while messages wait: the partition of a chat (and of its dedup markers)
depends on it. The prefix lets two deployments share one Redis; it may not contain ``:``,
braces or glob characters, so ``<prefix>:*`` matches exactly this deployment's keys.
"""

from __future__ import annotations

import re
import zlib

from larkbot.store.redis._errors import RedisConfigError

__all__ = ["GROUP", "Keyspace"]

GROUP = "larkbot"
_PREFIX = re.compile(r"[A-Za-z0-9_.-]{1,32}")


class Keyspace:
    """Key names for one deployment: a ``prefix`` and ``partitions`` partitions."""

    def __init__(self, prefix: str = "lb", partitions: int = 64) -> None:
        if not _PREFIX.fullmatch(prefix):
            raise RedisConfigError(
                f"the Redis key prefix {prefix!r} is not usable: use 1 to 32 letters, digits, "
                "'.', '_' or '-'"
            )
        if not 1 <= partitions <= 4096:
            raise RedisConfigError(
                f"{partitions} Redis partitions is out of range: use 1 to 4096 (64 is the default)"
            )
        self.prefix = prefix
        self.partitions = partitions
        self._width = max(2, len(str(partitions - 1)))

    def partition_of(self, chat_id: str) -> int:
        """The partition of ``chat_id``: ``crc32(chat_id) % partitions``."""
        return zlib.crc32(chat_id.encode()) % self.partitions

    def partition_of_conversation(self, conversation_key: str) -> int:
        """The partition of a conversation key (``<chat_id>`` or ``<chat_id>:<thread>``)."""
        return self.partition_of(conversation_key.partition(":")[0])

    def tag(self, partition: int) -> str:
        """The key prefix of ``partition``, hash tag included: ``lb:{p07}``."""
        return f"{self.prefix}:{{p{partition:0{self._width}d}}}"

    def stream(self, partition: int) -> str:
        return f"{self.tag(partition)}:in"

    def seen(self, partition: int, message_id: str) -> str:
        return f"{self.tag(partition)}:seen:{message_id}"

    def lease(self, partition: int) -> str:
        return f"{self.tag(partition)}:lease"

    def epoch(self, partition: int) -> str:
        return f"{self.tag(partition)}:epoch"

    def answer(self, partition: int, message_id: str) -> str:
        return f"{self.tag(partition)}:out:{message_id}"

    def done(self, partition: int, message_id: str) -> str:
        return f"{self.tag(partition)}:done:{message_id}"

    def streamed_card(self, partition: int, message_id: str) -> str:
        return f"{self.tag(partition)}:card:{message_id}"

    def conversation(self, partition: int, key: str) -> str:
        return f"{self.tag(partition)}:conv:{key}"

    def conversation_meta(self, partition: int, key: str) -> str:
        return f"{self.tag(partition)}:convmeta:{key}"

    def dead_letters(self, partition: int) -> str:
        return f"{self.tag(partition)}:dlq"

    @property
    def members(self) -> str:
        return f"{self.prefix}:members"

    def rate(self, open_id: str, kind: str) -> str:
        return f"{self.prefix}:{{rl:{open_id}}}:{kind}"

    @property
    def all_keys(self) -> str:
        """SCAN pattern of every key of this deployment."""
        return f"{self.prefix}:*"

    @property
    def partition_keys(self) -> str:
        """SCAN pattern of every partition key (``lb:{p*``)."""
        return f"{self.prefix}:{{p*"

    def split(self, key: str) -> tuple[int, str] | None:
        """``(partition, kind)`` of a partition key (kind: ``in``, ``seen``, ``conv``...)."""
        head = f"{self.prefix}:{{p"
        if not key.startswith(head):
            return None
        number, brace, rest = key[len(head) :].partition("}:")
        if not brace or not number.isdigit():
            return None
        return int(number), rest.partition(":")[0]
