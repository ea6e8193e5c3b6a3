"""The Redis store: intake, answers, conversations, limits and the fenced finish.

One :class:`RedisStore` per process, opened with :meth:`RedisStore.open`; it owns a
connection pool (redis-py's ``redis.asyncio`` with hiredis) and the Lua scripts of
:mod:`larkbot.store.redis._scripts`. Every call is bounded by a timeout and every failure
surfaces as :class:`RedisUnavailable`, so callers handle an outage in one place.
:class:`~larkbot.store.redis.PartitionOwnership` uses the same store to decide which
replica answers which partition, and feeds it the admitted messages in order.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple, TypeVar

import anyio
import anyio.to_thread
import redis
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.connection import RedisSSLContext, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.driver_info import DriverInfo
from redis.exceptions import (
    AuthenticationError,
    NoScriptError,
    OutOfMemoryError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.maint_notifications import MaintNotificationsConfig

import larkbot
from larkbot.core.conversation import Conversation, Turn
from larkbot.core.message import InboundMessage
from larkbot.store.confirmations import ConfirmationMove, ConfirmationState, PendingWrite
from larkbot.store.redis import _admin, _scripts
from larkbot.store.redis._endpoint import RedisEndpoint
from larkbot.store.redis._errors import RedisConfigError, RedisUnavailable
from larkbot.store.redis._keys import GROUP, Keyspace
from larkbot.store.redis._models import (
    KEEP,
    BackupSummary,
    CachedAnswer,
    ConversationChange,
    FinishChange,
    FinishOutcome,
    IntakeResult,
    MessageState,
    PartitionBacklog,
    RateDecision,
    RedisServerInfo,
    RestoreSummary,
    StateCounts,
    WorkItem,
    _Keep,
)
from larkbot.store.streamed import StreamedCard

__all__ = ["RedisStore"]

logger = logging.getLogger("larkbot.store")

T = TypeVar("T")
_Stored = TypeVar("_Stored", bound=BaseModel)
_RATE_WINDOW_MS = 60_000
# A settled confirmation is kept this long past its expiry, so a late click still reads
# what happened to it.
_CONFIRMATION_KEPT_SECONDS = 86_400.0
# Redis appends where in which script an error arose; operators need the error itself.
_SCRIPT_SUFFIX = re.compile(r"\.? *script: [0-9a-f]{40}, on @user_script:\d+\.?")


_SETTLE_ONLY = FinishChange()


class _StoredTurn(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    role: Literal["user", "assistant"]
    text: str
    at: datetime


Call = tuple[AsyncScript, Sequence[str], Sequence[str | int | float | bytes]]


class _ConfirmationSettled(BaseModel):
    """What ``<prefix>:{cf:<id>}:state`` holds once a confirmation left ``pending``."""

    state: ConfirmationState
    outcome: str = ""
    approved_at: float | None = None
    approving_since: float | None = None


class _Entry(NamedTuple):
    """A stream entry as the READ script hands it out."""

    entry_id: str
    message_id: str
    payload: bytes
    deliveries: int


class _Read(NamedTuple):
    """What one fenced READ returned; ``last_id`` is empty when the lease is not ours."""

    last_id: str
    entries: list[_Entry]
    dead: list[_Entry]


class RedisStore:
    """Shared state of N replicas in one Redis (or Valkey); open with :meth:`open`.

    :ivar endpoint: where Redis is (the password kept apart, never shown).
    :ivar keys: the key space (prefix and partition count).
    """

    def __init__(
        self,
        client: Redis,
        endpoint: RedisEndpoint,
        keys: Keyspace,
        *,
        command_timeout: float,
        intake_timeout: float,
        seen_ttl_seconds: float,
        conversation_ttl_seconds: float,
        max_turns: int,
    ) -> None:
        """Use :meth:`open`; this wires an already built client."""
        self._client = client
        self.endpoint = endpoint
        self.keys = keys
        self._command_timeout = command_timeout
        self._intake_timeout = intake_timeout
        self._seen_ttl_ms = int(seen_ttl_seconds * 1000)
        self._conversation_ttl_ms = int(conversation_ttl_seconds * 1000)
        self._max_turns = max_turns
        self._failing_since: float | None = None
        register = client.register_script
        self._intake = register(_scripts.INTAKE)
        self._lease = register(_scripts.LEASE)
        self._release = register(_scripts.RELEASE)
        self._claim = register(_scripts.CLAIM)
        self._read = register(_scripts.READ)
        self._finish = register(_scripts.FINISH)
        self._put_answer = register(_scripts.PUT_ANSWER)
        self._put_streamed_card = register(_scripts.PUT_STREAMED_CARD)
        self._rate = register(_scripts.RATE_LIMIT)
        self._heartbeat = register(_scripts.HEARTBEAT)
        self._max_epoch = register(_scripts.MAX_EPOCH)
        self._move_confirmation = register(_scripts.CONFIRMATION_MOVE)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        url: str | RedisEndpoint,
        *,
        password: str | None = None,
        prefix: str = "lb",
        partitions: int = 64,
        command_timeout: float = 2.0,
        intake_timeout: float = 0.5,
        seen_ttl_seconds: float = 86400.0,
        conversation_ttl_seconds: float = 3600.0,
        max_turns: int = 50,
        max_connections: int = 64,
    ) -> AsyncIterator[RedisStore]:
        """Open a store on ``url``; the pool is closed on exit.

        Nothing is sent to Redis here, so a daemon can start while Redis is down and
        recover when it comes back; call :meth:`ping` to check.

        :param url: ``redis://``, ``rediss://`` or ``unix://`` URL, or a parsed endpoint.
        :param password: overrides a password in the URL (a secret: never logged).
        :param prefix: first part of every key, so deployments can share a Redis.
        :param partitions: P; every replica of a deployment must use the same value.
        :param command_timeout: bound of every call, in seconds.
        :param intake_timeout: tighter bound of :meth:`intake` (it runs inside the 3 s ack).
        :param seen_ttl_seconds: how long a message id is remembered as seen and as done.
        :param conversation_ttl_seconds: idle time after which a conversation is forgotten.
        :param max_turns: turns kept per conversation.
        :param max_connections: connections the pool may open (callers wait beyond it).
        """
        if isinstance(url, str):
            endpoint = RedisEndpoint.parse(url, password)
        elif password:
            endpoint = RedisEndpoint(url.url, SecretStr(password), url.username)
        else:
            endpoint = url
        keys = Keyspace(prefix, partitions)
        for name, value in (
            ("command_timeout", command_timeout),
            ("intake_timeout", intake_timeout),
            ("seen_ttl_seconds", seen_ttl_seconds),
            ("conversation_ttl_seconds", conversation_ttl_seconds),
        ):
            if value <= 0:
                raise RedisConfigError(f"the Redis store's {name} must be positive, not {value}")
        if max_turns < 1 or max_connections < 2:
            raise RedisConfigError(
                "the Redis store needs max_turns of at least 1 and max_connections of at least 2"
            )
        try:
            pool = BlockingConnectionPool.from_url(
                endpoint.url,
                username=endpoint.username,
                password=endpoint.password.get_secret_value() if endpoint.password else None,
                max_connections=max_connections,
                timeout=command_timeout,
                socket_connect_timeout=command_timeout,
                socket_keepalive=True,
                # One immediate retry on a fresh connection: after Redis restarts, every
                # pooled connection is dead, and the first call on each would fail for
                # nothing. Every script tolerates running twice (see _scripts).
                retry=Retry(NoBackoff(), 1),
                client_name="larkbot",
                # Without an explicit version redis-py looks its own up in the installed
                # package metadata (os.stat on every sys.path entry) for each new
                # connection, blocking the event loop.
                # Maintenance notifications are a Redis Enterprise/Cloud feature; asking for
                # them costs every new connection a round trip that open source Redis refuses.
                maint_notifications_config=MaintNotificationsConfig(enabled=False),
                driver_info=DriverInfo(
                    name="redis-py", lib_version=redis.__version__
                ).add_upstream_driver("larkbot", larkbot.__version__),
            )
        except (ValueError, TypeError) as exc:
            raise RedisConfigError(
                f"the Redis URL {endpoint} has an option redis-py does not accept: "
                f"{endpoint.scrub(str(exc))}"
            ) from None
        if endpoint.tls:
            await _share_tls_context(pool)
        client = Redis(connection_pool=pool)
        store = cls(
            client,
            endpoint,
            keys,
            command_timeout=command_timeout,
            intake_timeout=intake_timeout,
            seen_ttl_seconds=seen_ttl_seconds,
            conversation_ttl_seconds=conversation_ttl_seconds,
            max_turns=max_turns,
        )
        try:
            yield store
        finally:
            with anyio.CancelScope(shield=True):
                await client.aclose()
                await pool.disconnect()

    @property
    def command_timeout(self) -> float:
        """Bound of every call, in seconds."""
        return self._command_timeout

    @property
    def intake_timeout(self) -> float:
        """Bound of :meth:`intake` in seconds (it runs inside the ack)."""
        return self._intake_timeout

    @property
    def max_turns(self) -> int:
        """Turns kept per conversation."""
        return self._max_turns

    def __repr__(self) -> str:
        return f"RedisStore({self.endpoint.display!r}, prefix={self.keys.prefix!r})"

    # -- intake ---------------------------------------------------------------------------

    async def intake(self, message: InboundMessage) -> IntakeResult:
        """Mark ``message`` seen and queue it in its chat's partition, in one atomic step.

        ``result.new`` is False for a message id seen before (within the seen TTL). Of any
        number of concurrent intakes of one message id, from any replicas, exactly one is
        new. Ack the event only after this returned; it raises :class:`RedisUnavailable`
        (the event must not be acked) after at most ``intake_timeout`` seconds.
        """
        partition = self.keys.partition_of(message.chat_id)
        keys = [self.keys.seen(partition, message.message_id), self.keys.stream(partition)]
        args = [self._seen_ttl_ms, message.message_id, message.model_dump_json()]
        reply = await self._guarded(
            "intake",
            lambda: self._run_script(self._intake, keys, args),
            bound=self.intake_timeout,
        )
        return IntakeResult(message.message_id, partition, _text(reply) if reply else None)

    async def intake_many(self, messages: Sequence[InboundMessage]) -> list[IntakeResult]:
        """:meth:`intake` for several messages in one round trip; results in the same order.

        Each message is atomic on its own. On :class:`RedisUnavailable` some may have been
        queued: re-delivered events then find them as duplicates, which is correct.
        """
        if not messages:
            return []
        calls: list[Call] = []
        partitions: list[int] = []
        for message in messages:
            partition = self.keys.partition_of(message.chat_id)
            partitions.append(partition)
            keys = [
                self.keys.seen(partition, message.message_id),
                self.keys.stream(partition),
            ]
            args = [self._seen_ttl_ms, message.message_id, message.model_dump_json()]
            calls.append((self._intake, keys, args))
        replies = await self._guarded(
            "intake", lambda: self._run_scripts(calls), bound=self.intake_timeout
        )
        return [
            IntakeResult(message.message_id, partition, _text(reply) if reply else None)
            for message, partition, reply in zip(messages, partitions, replies, strict=True)
        ]

    async def message_state(self, chat_id: str, message_id: str) -> MessageState:
        """Whether ``message_id`` is unknown, admitted and not finished, or finished."""
        partition = self.keys.partition_of(chat_id)

        async def _states() -> list[Any]:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.exists(self.keys.seen(partition, message_id))
                pipe.exists(self.keys.done(partition, message_id))
                return await pipe.execute()

        seen, done = await self._guarded("a message lookup", _states)
        if done:
            return MessageState.DONE
        return MessageState.PENDING if seen else MessageState.UNKNOWN

    async def verify_layout(self) -> None:
        """Record this deployment's partition count in Redis, or refuse a different one.

        Replicas that disagree on P would put one chat in two partitions: its messages
        could be answered out of order, and a re-delivery landing on the other replica
        would pass dedup. Call it once at start-up (and in doctor); the first replica to
        call it sets ``<prefix>:layout``. Raises :class:`RedisConfigError` on a mismatch.
        """
        key = f"{self.keys.prefix}:layout"
        wanted = f"partitions={self.keys.partitions}"

        async def _check() -> Any:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.set(key, wanted, nx=True)
                pipe.get(key)
                return (await pipe.execute())[1]

        found = _text(await self._guarded("a layout check", _check))
        if found != wanted:
            raise RedisConfigError(
                f"Redis at {self.endpoint} holds a deployment with {found.replace('=', ' = ')} "
                f"under the prefix {self.keys.prefix!r}, and this replica uses "
                f"{self.keys.partitions}: use the same partition count on every replica, or "
                "another key prefix"
            )

    # -- answers, conversations, the fenced finish ------------------------------------------

    async def get_answer(self, chat_id: str, message_id: str) -> CachedAnswer | None:
        """The answer a previous owner generated for ``message_id``, or ``None``."""
        key = self.keys.answer(self.keys.partition_of(chat_id), message_id)
        raw = await self._guarded("an answer lookup", lambda: self._client.get(key))
        return _answer(raw, message_id)

    async def put_answer(
        self,
        chat_id: str,
        message_id: str,
        text: str,
        *,
        markdown: bool = False,
        card: Mapping[str, Any] | None = None,
        change: ConversationChange | None = None,
    ) -> CachedAnswer:
        """Keep the answer generated for ``message_id`` before it is sent; return the one to send.

        The first answer stored wins: when another owner stored one already (a paused
        replica that woke up, say), that one comes back, so every owner sends the same
        text and the conversation records what the chat shows. ``card`` (the card the
        answer is sent as) and ``change`` (what the answer does to its conversation) are
        kept with it, so whichever owner finishes the message records the same turns. It
        lives until :meth:`finish` or the seen TTL.
        """
        key = self.keys.answer(self.keys.partition_of(chat_id), message_id)
        answer = CachedAnswer(
            text=text,
            markdown=markdown,
            card=dict(card) if card is not None else None,
            generated_at=datetime.now(UTC),
            change=change,
        )
        raw = await self._guarded(
            "storing an answer",
            lambda: self._run_script(
                self._put_answer, [key], [answer.model_dump_json(), self._seen_ttl_ms]
            ),
        )
        return _answer(raw, message_id) or answer

    async def streamed_card(self, chat_id: str, message_id: str) -> StreamedCard | None:
        """The streamed card an owner kept for the answer to ``message_id``, or ``None``."""
        key = self.keys.streamed_card(self.keys.partition_of(chat_id), message_id)
        raw = await self._guarded("a streamed card lookup", lambda: self._client.get(key))
        return _stored(
            StreamedCard, raw, message_id, "the streamed card is unreadable, ignoring it"
        )

    async def keep_streamed_card(
        self, chat_id: str, message_id: str, card: StreamedCard, *, token: str
    ) -> bool:
        """Keep the streamed card of the answer to ``message_id`` while ``token`` holds the lease.

        ``False`` when the partition's lease is no longer ``token`` (``owner|epoch``): the
        card then belongs to the partition's next owner, which reads the ceiling kept last.
        """
        partition = self.keys.partition_of(chat_id)
        keys = [self.keys.lease(partition), self.keys.streamed_card(partition, message_id)]
        args = [token, card.model_dump_json(), self._seen_ttl_ms]
        kept = await self._guarded(
            "keeping a streamed card", lambda: self._run_script(self._put_streamed_card, keys, args)
        )
        return bool(kept)

    async def history(self, conversation_key: str, limit: int | None = None) -> list[Turn]:
        """The last ``limit`` turns (default: all kept) of a conversation, oldest first.

        ``conversation_key`` is ``<chat_id>`` or ``<chat_id>:<thread>``
        (:attr:`InboundMessage.conversation_key`); the chat id picks the partition.
        """
        return (await self.conversation(conversation_key, limit)).turns

    async def conversation(self, conversation_key: str, limit: int | None = None) -> Conversation:
        """The conversation's turns (as :meth:`history`), language and profile."""
        partition = self.keys.partition_of_conversation(conversation_key)
        count = self.max_turns if limit is None else max(0, min(limit, self.max_turns))

        async def _read() -> list[Any]:
            async with self._client.pipeline(transaction=False) as pipe:
                pipe.hgetall(self.keys.conversation_meta(partition, conversation_key))
                if count:  # LRANGE -0 -1 would return the whole list
                    pipe.lrange(self.keys.conversation(partition, conversation_key), -count, -1)
                return await pipe.execute()

        meta, *rest = await self._guarded("a conversation lookup", _read)
        raw_turns = rest[0] if rest else []
        turns: list[Turn] = []
        for raw in raw_turns:
            try:
                stored = _StoredTurn.model_validate_json(raw)
            except ValidationError:
                logger.warning("skipping an unreadable turn of conversation %s", conversation_key)
                continue
            turns.append(Turn(stored.role, stored.text, stored.at))
        fields = {_text(k): _text(v) for k, v in (meta or {}).items()}
        return Conversation(
            key=conversation_key,
            turns=turns,
            language=fields.get("language") or None,  # type: ignore[arg-type]
            profile=fields.get("profile") or None,
        )

    async def forget(self, conversation_key: str) -> None:
        """Drop a conversation's turns, language and profile (the ``/reset`` command)."""
        partition = self.keys.partition_of_conversation(conversation_key)
        keys = (
            self.keys.conversation(partition, conversation_key),
            self.keys.conversation_meta(partition, conversation_key),
        )
        await self._guarded("forgetting a conversation", lambda: self._client.delete(*keys))

    async def finish(
        self, items: WorkItem | Sequence[WorkItem], change: FinishChange = _SETTLE_ONLY
    ) -> FinishOutcome:
        """Settle answered work, fenced by the lease the items were read under.

        In one atomic step, and only while the partition's lease still holds the items'
        ``owner|epoch``: apply ``change`` (empty the conversation's history when
        ``reset``, append the user turn and the answer turn when given, trimmed to
        ``max_turns`` with idle expiry renewed, set the language and profile), mark
        every message done, acknowledge and delete their stream entries and drop their
        cached answers. Several items (a burst answered together) must share one chat and
        one epoch.

        Returns :attr:`FinishOutcome.FENCED` (nothing written) when another owner took the
        partition over, and :attr:`FinishOutcome.ALREADY_DONE` for a repeated call.
        """
        batch = [items] if isinstance(items, WorkItem) else list(items)
        if not batch:
            raise ValueError("finish needs at least one work item")
        first = batch[0]
        if any(i.partition != first.partition or i.token != first.token for i in batch):
            raise ValueError("the items of one finish must share a partition and an epoch")
        key = change.conversation_key or first.message.conversation_key
        partition = first.partition
        if self.keys.partition_of_conversation(key) != partition:
            raise ValueError(f"conversation {key!r} is not in partition {partition}")
        now = datetime.now(UTC).isoformat()
        turns = [
            json.dumps({"role": role, "text": text, "at": now}, ensure_ascii=False)
            for role, text in (("user", change.user_text), ("assistant", change.answer_text))
            if text is not None
        ]
        keys = [
            self.keys.lease(partition),
            self.keys.stream(partition),
            self.keys.conversation(partition, key),
            self.keys.conversation_meta(partition, key),
        ]
        for item in batch:
            keys.append(self.keys.done(partition, item.message.message_id))
            keys.append(self.keys.answer(partition, item.message.message_id))
        args: list[str | int] = [
            first.token,
            GROUP,
            self.max_turns,
            self._conversation_ttl_ms,
            self._seen_ttl_ms,
            _change(change.language),
            _change(change.profile),
            "1" if change.reset else "0",
            len(turns),
            *turns,
            *(item.entry_id for item in batch),
        ]
        reply = await self._guarded(
            "finishing an answer", lambda: self._run_script(self._finish, keys, args)
        )
        outcome = FinishOutcome(int(reply))
        if outcome is FinishOutcome.FENCED:
            logger.info(
                "message %s: partition %d has a new owner, finish skipped (epoch %d)",
                first.message.message_id,
                partition,
                first.epoch,
            )
        return outcome

    async def rate_limit(
        self, open_id: str, kind: Literal["msg", "write"], per_minute: int
    ) -> RateDecision:
        """Count a call of ``kind`` by ``open_id`` against ``per_minute``, cluster-wide.

        The same rule as :class:`larkbot.agent.limits.RateLimiter`: at most ``per_minute``
        calls in any 60 s window, on Redis' clock (replicas' clocks never matter); a
        refused call is not counted. A sliding window rather than a token bucket, so the
        limit a user reads ("N per minute") is exactly what is enforced, with no burst
        allowance: N+k messages in one minute get exactly N answers.
        """
        if per_minute < 1:
            raise ValueError("per_minute must be at least 1")
        key = self.keys.rate(open_id, kind)
        args = [per_minute, _RATE_WINDOW_MS, uuid.uuid4().hex]
        allowed, retry_ms, remaining = await self._guarded(
            "a rate limit check", lambda: self._run_script(self._rate, [key], args)
        )
        return RateDecision(bool(allowed), int(retry_ms) / 1000, int(remaining))

    # -- health and operations ---------------------------------------------------------------

    @property
    def outage_seconds(self) -> float:
        """Seconds since calls began to fail without a success since; 0.0 when healthy.

        Every call counts (intake, the ownership loop's heartbeats, pings), so a daemon can
        refuse acks at once and close its long connection once this passes a few seconds,
        and ``/readyz`` can answer 503 while it is above zero, without probing Redis itself.
        """
        if self._failing_since is None:
            return 0.0
        return max(anyio.current_time() - self._failing_since, 1e-9)

    async def ping(self, bound: float | None = None) -> float:
        """Round-trip time of a PING in seconds.

        Raises :class:`RedisUnavailable` when Redis does not answer within ``bound``
        seconds (default: the command timeout).
        """
        started = anyio.current_time()
        await self._guarded("a ping", self._client.ping, bound=bound)
        return anyio.current_time() - started

    async def info(self) -> RedisServerInfo:
        """Version, role, eviction policy and persistence of the server, for doctor."""
        return await self._guarded("INFO", lambda: _admin.server_info(self._client))

    async def backlog(self) -> list[PartitionBacklog]:
        """Per partition: unfinished entries, entries handed out, age of the oldest one."""
        return await self._guarded(
            "a backlog query", lambda: _admin.backlog(self._client, self.keys)
        )

    async def inspect(self) -> StateCounts:
        """Counts of our keys (seen, done, answers, conversations, pending per partition)."""
        return await self._guarded(
            "an inventory",
            lambda: _admin.inspect(self._client, self.keys),
            bound=600,
        )

    async def backup(self, path: Path) -> BackupSummary:
        """Write this deployment's keys (not leases, members or limits) to ``path``.

        JSON lines: a header, then one line per key with its ``DUMP`` (base64) and absolute
        expiry. Each partition is read in one MULTI/EXEC, so its queue, its done markers
        and its conversations agree. Consistent while replicas run. The file is written
        beside ``path`` and renamed into place.
        """
        return await self._guarded(
            "a backup", lambda: _admin.backup(self._client, self.keys, path), bound=3600
        )

    async def restore(self, path: Path, *, replace: bool = False) -> RestoreSummary:
        """Load a :meth:`backup` file into this Redis (empty or not).

        Keys that exist are kept unless ``replace``; keys whose expiry passed are skipped;
        fencing counters never move backwards; every message in a restored queue is marked
        seen, so a re-delivery of it is a duplicate. Restore while no replica runs.
        """
        return await self._guarded(
            "a restore",
            lambda: _admin.restore(self, path, replace=replace),
            bound=3600,
        )

    # -- partition primitives (used by PartitionOwnership) -----------------------------------

    async def _heartbeat_members(self, owner: str, ttl_ms: int) -> list[str]:
        reply = await self._guarded(
            "a heartbeat",
            lambda: self._run_script(self._heartbeat, [self.keys.members], [owner, ttl_ms]),
        )
        return [_text(member) for member in reply]

    async def _lease_many(
        self, requests: Sequence[tuple[int, str, int]], ttl_ms: int
    ) -> list[tuple[int, bool, str | None]]:
        """Acquire or renew leases: ``(partition, owner, epoch held or 0)`` each.

        Returns ``(epoch, newly acquired, None)`` or ``(0, False, holder)`` per request.
        """
        calls: list[Call] = [
            (
                self._lease,
                [self.keys.lease(partition), self.keys.epoch(partition)],
                [owner, epoch, ttl_ms],
            )
            for partition, owner, epoch in requests
        ]
        replies = await self._guarded("lease renewals", lambda: self._run_scripts(calls))
        results: list[tuple[int, bool, str | None]] = []
        for epoch, flag in replies:
            if int(epoch) == 0:
                results.append((0, False, _text(flag)))
            else:
                results.append((int(epoch), bool(flag), None))
        return results

    async def _release_many(self, leases: Sequence[tuple[int, str]]) -> int:
        calls: list[Call] = [
            (self._release, [self.keys.lease(partition)], [token]) for partition, token in leases
        ]
        replies = await self._guarded("releasing leases", lambda: self._run_scripts(calls))
        return sum(int(r) for r in replies)

    async def _claim_all(self, partition: int, token: str, consumer: str, batch: int) -> bool:
        """Move every pending entry of the partition to ``consumer``; False when fenced."""
        start = "0-0"
        keys = [self.keys.lease(partition), self.keys.stream(partition)]
        while True:
            args = [token, GROUP, consumer, start, batch]
            reply = await self._guarded(
                "claiming a partition", lambda a=args: self._run_script(self._claim, keys, a)
            )
            if isinstance(reply[0], int):  # {-1}: the lease is not ours
                return False
            start = _text(reply[0])
            if start == "0-0":
                return True

    async def _read_many(
        self,
        reads: Sequence[tuple[int, str, str, str]],
        count: int,
        max_deliveries: int,
    ) -> list[_Read]:
        """Fenced reads ``(partition, token, consumer, cursor)``, one round trip."""
        calls: list[Call] = [
            (
                self._read,
                [
                    self.keys.lease(partition),
                    self.keys.stream(partition),
                    self.keys.dead_letters(partition),
                ],
                [token, GROUP, consumer, cursor, count, max_deliveries],
            )
            for partition, token, consumer, cursor in reads
        ]
        replies = await self._guarded("reading a partition", lambda: self._run_scripts(calls))
        return [
            _Read("", [], [])
            if isinstance(reply[0], int)  # {-1}: the lease is not ours
            else _Read(_text(reply[0]), _entries(reply[1]), _entries(reply[2]))
            for reply in replies
        ]

    async def _wait_for_entries(self, cursors: dict[int, str], block_ms: int) -> set[int]:
        """Block until some stream has an entry after its cursor; those partitions."""
        if not cursors:
            return set()
        streams = {self.keys.stream(p): cursor for p, cursor in cursors.items()}
        by_key = {self.keys.stream(p): p for p in cursors}
        reply = await self._guarded(
            "waiting for messages",
            lambda: self._client.xread(streams, count=1, block=block_ms),
            bound=block_ms / 1000 + self.command_timeout,
        )
        if not reply:
            return set()
        names = reply.keys() if isinstance(reply, dict) else [entry[0] for entry in reply]
        return {by_key[_text(name)] for name in names}

    # -- plumbing ----------------------------------------------------------------------------

    # -- write confirmations ------------------------------------------------------------------

    async def add_confirmation(self, pending: PendingWrite) -> None:
        """Keep a new pending write confirmation until a day after it expires."""
        ttl_ms = self._confirmation_ttl_ms(pending)
        key = self._confirmation_key(pending.id, "body")
        await self._guarded(
            "storing a confirmation",
            lambda: self._client.set(key, pending.model_dump_json(), px=ttl_ms),
        )

    async def confirmation(self, confirmation_id: str) -> PendingWrite | None:
        """The confirmation as it stands now, or ``None``."""
        return (await self._confirmation_read(confirmation_id))[0]

    async def settle_confirmation(self, move: ConfirmationMove) -> bool:
        """Make ``move``: a compare-and-set of the confirmation's state against what was read.

        The state key holds everything a move changes, so the script compares the whole
        value: of concurrent moves from one state (or one attempt), exactly one wins.
        """
        pending, read = await self._confirmation_read(move.confirmation_id)
        if pending is None or not move.applies_to(pending):
            return False
        moved = move.applied(pending)
        value = _ConfirmationSettled(
            state=moved.state,
            outcome=moved.outcome,
            approved_at=moved.approved_at,
            approving_since=moved.approving_since,
        ).model_dump_json()
        key = self._confirmation_key(move.confirmation_id, "state")
        args = [read, value, self._confirmation_ttl_ms(pending)]
        done = await self._guarded(
            "settling a confirmation",
            lambda: self._run_script(self._move_confirmation, [key], args),
        )
        return bool(done)

    async def _confirmation_read(self, confirmation_id: str) -> tuple[PendingWrite | None, str]:
        """The confirmation as it stands, and its state key's raw value ('' when pending)."""
        body_key = self._confirmation_key(confirmation_id, "body")
        state_key = self._confirmation_key(confirmation_id, "state")
        body, state = await self._guarded(
            "a confirmation lookup", lambda: self._client.mget(body_key, state_key)
        )
        if body is None:
            return None, ""
        pending = PendingWrite.model_validate_json(body)
        if state is None:
            return pending, ""
        settled = _ConfirmationSettled.model_validate_json(state)
        return pending.model_copy(update=settled.model_dump()), _text(state)

    def _confirmation_key(self, confirmation_id: str, part: str) -> str:
        # One hash tag per confirmation: its keys share a Redis Cluster slot.
        return f"{self.keys.prefix}:{{cf:{confirmation_id}}}:{part}"

    @staticmethod
    def _confirmation_ttl_ms(pending: PendingWrite) -> int:
        return max(
            1000, int((pending.expires_at + _CONFIRMATION_KEPT_SECONDS - time.time()) * 1000)
        )

    async def _guarded(
        self, what: str, call: Callable[[], Awaitable[T]], *, bound: float | None = None
    ) -> T:
        """Run ``call`` within ``bound`` s; turn any failure into :class:`RedisUnavailable`."""
        limit = self.command_timeout if bound is None else bound
        try:
            with anyio.fail_after(limit):
                result = await call()
        except TimeoutError:
            self._failed()
            raise RedisUnavailable(
                f"Redis at {self.endpoint} did not answer {what} within {limit:g} s"
            ) from None
        except (RedisError, OSError) as exc:
            self._failed()
            raise RedisUnavailable(self._explain(what, exc)) from None
        self._failing_since = None
        return result

    def _failed(self) -> None:
        if self._failing_since is None:
            self._failing_since = anyio.current_time()

    def _explain(self, what: str, exc: BaseException) -> str:
        reason = _SCRIPT_SUFFIX.sub("", " ".join(str(exc).split()))
        reason = self.endpoint.scrub(reason).rstrip(".") or type(exc).__name__
        if isinstance(exc, OutOfMemoryError):
            return (
                f"Redis at {self.endpoint} is out of memory and refused {what} ({reason}): "
                "raise maxmemory or free memory, and keep maxmemory-policy noeviction"
            )
        if isinstance(exc, ReadOnlyError):
            return f"Redis at {self.endpoint} is a read-only replica: point the URL at the primary"
        if isinstance(exc, AuthenticationError) or "WRONGPASS" in reason or "NOAUTH" in reason:
            return (
                f"Redis at {self.endpoint} refused the credentials ({reason}): check the "
                "Redis user and password"
            )
        if isinstance(exc, ResponseError):
            return f"Redis at {self.endpoint} refused {what}: {reason}"
        return f"Redis at {self.endpoint} failed {what}: {reason}"

    async def _run_script(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any]
    ) -> Any:
        try:
            return await self._client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            # Redis restarted (or SCRIPT FLUSH): scripts are not persisted, load it again.
            await self._client.script_load(script.script)
            return await self._client.evalsha(script.sha, len(keys), *keys, *args)

    async def _run_scripts(self, calls: Sequence[Call]) -> list[Any]:
        """Run script calls in one pipeline (one round trip), reloading lost scripts.

        redis-py's own pipeline asks ``SCRIPT EXISTS`` before every execution, which would
        double the round trips of the hot path; NOSCRIPT is rare (a Redis restart), so we
        run EVALSHA directly and reload only when told to.
        """
        replies = await self._pipeline(calls)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            for script in {calls[i][0] for i in missing}:
                await self._client.script_load(script.script)
            retried = await self._pipeline([calls[i] for i in missing])
            for i, reply in zip(missing, retried, strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    async def _pipeline(self, calls: Sequence[Call]) -> list[Any]:
        async with self._client.pipeline(transaction=False) as pipe:
            for script, keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            return await pipe.execute(raise_on_error=False)


class _TLSConnection(SSLConnection):
    """redis-py's TLS connection with one SSL context shared by the whole pool."""

    def __init__(self, *, shared_ssl_context: RedisSSLContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ssl_context = shared_ssl_context


async def _share_tls_context(pool: BlockingConnectionPool) -> None:
    """Build the pool's SSL context once, in a worker thread.

    redis-py builds a context for every new connection, on the event loop, and building
    one reads the CA bundle from disk (``load_verify_locations``): a blocking call each
    time the pool grows or reconnects after an outage.
    """
    template = pool.make_connection()
    assert isinstance(template, SSLConnection)
    context = template.ssl_context
    try:
        await anyio.to_thread.run_sync(context.get)
    except (OSError, ValueError, RedisError) as exc:
        raise RedisConfigError(
            f"the TLS settings of the Redis URL do not work: {' '.join(str(exc).split())}"
        ) from None
    pool.connection_class = _TLSConnection
    pool.connection_kwargs["shared_ssl_context"] = context


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entries(flat: Sequence[Any]) -> list[_Entry]:
    return [
        _Entry(_text(flat[i]), _text(flat[i + 1]), flat[i + 2], int(flat[i + 3]))
        for i in range(0, len(flat), 4)
    ]


def _change(value: str | _Keep | None) -> str:
    if value is KEEP:
        return ""
    if value is None:
        return "-"
    return f"={value}"


def _answer(raw: bytes | None, message_id: str) -> CachedAnswer | None:
    return _stored(
        CachedAnswer, raw, message_id, "the cached answer is unreadable, generating anew"
    )


def _stored(
    model: type[_Stored], raw: bytes | None, message_id: str, unreadable: str
) -> _Stored | None:
    """``raw`` read as ``model``; ``None`` when absent, or unreadable (logged as such)."""
    if raw is None:
        return None
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        logger.warning("message %s: %s", message_id, unreadable)
        return None
