"""Operations on the Redis store: server facts, backlog, inventory, backup and restore.

These run behind :class:`~larkbot.store.redis.RedisStore`'s methods, which bound them in
time and turn failures into :class:`RedisUnavailable`.
"""

from __future__ import annotations

import base64
import json
import os
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio import AsyncFile
from pydantic import BaseModel, ConfigDict, ValidationError
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from larkbot.store.redis._errors import RedisConfigError
from larkbot.store.redis._keys import GROUP, Keyspace
from larkbot.store.redis._models import (
    BackupSummary,
    PartitionBacklog,
    RedisServerInfo,
    RestoreSummary,
    StateCounts,
)

if TYPE_CHECKING:
    from larkbot.store.redis._store import RedisStore

__all__ = ["backlog", "backup", "inspect", "restore", "server_info"]

BACKUP_FORMAT = "larkbot-redis-state"
BACKUP_VERSION = 1
_SCAN_COUNT = 1000
_BATCH = 500
# Runtime coordination, not state: a restored lease would only block a partition.
_NOT_BACKED_UP = frozenset({"lease"})
# Tries at a consistent read of a busy partition before reading it in one script.
_OPTIMISTIC_TRIES = 3
# A stream's length and last generated id: any intake or finish changes one of them.
_Mark = tuple[int, str] | None

# Every key of one partition, dumped in one atomic step (the fallback of a busy partition).
# ARGV: the partition's key pattern, its lease key (skipped), its epoch key (read as a
# number). Returns the server time, then (key, DUMP or counter, PTTL) per key. KEYS is a
# pass over the whole keyspace; it is used only when SCAN could not give a consistent list.
_DUMP_PARTITION = """
local t = redis.call('TIME')
local out = {t[1], t[2]}
for _, key in ipairs(redis.call('KEYS', ARGV[1])) do
  if key ~= ARGV[2] then
    local value
    if key == ARGV[3] then value = redis.call('GET', key) else value = redis.call('DUMP', key) end
    table.insert(out, key)
    table.insert(out, value)
    table.insert(out, redis.call('PTTL', key))
  end
end
return out
"""


class _BackupHeader(BaseModel):
    model_config = ConfigDict(extra="ignore")

    format: str
    version: int
    prefix: str
    partitions: int
    created_at: datetime
    redis_version: str = ""


class _BackupRecord(BaseModel):
    model_config = ConfigDict(extra="ignore")

    key: str
    expire_at_ms: int | None = None
    dump: str | None = None
    counter: int | None = None


async def server_info(client: Redis) -> RedisServerInfo:
    """Read INFO (and CONFIG where allowed: managed services often forbid it)."""
    async with client.pipeline(transaction=False) as pipe:
        for section in ("server", "persistence", "memory", "replication"):
            pipe.info(section)
        server, persistence, memory, replication = await pipe.execute()
    config: dict[str, str] = {}
    try:
        for name in ("appendfsync", "save"):
            config.update({_s(k): _s(v) for k, v in (await client.config_get(name)).items()})
    except ResponseError:
        pass
    name = _s(server.get("server_name", "redis")) or "redis"
    version = _s(server.get(f"{name}_version", server.get("redis_version", "0")))
    return RedisServerInfo(
        version=version,
        server=name,
        mode=_s(server.get("redis_mode", "standalone")),
        role=_s(replication.get("role", "master")),
        maxmemory_policy=_s(memory.get("maxmemory_policy", "unknown")),
        aof_enabled=bool(int(persistence.get("aof_enabled", 0))),
        appendfsync=config.get("appendfsync"),
        rdb_save=config.get("save"),
        used_memory_bytes=int(memory.get("used_memory", 0)),
        maxmemory_bytes=int(memory.get("maxmemory", 0)),
    )


async def backlog(client: Redis, keys: Keyspace) -> list[PartitionBacklog]:
    """XLEN, XPENDING and the oldest entry of every partition's stream, in one round trip.

    The oldest entry's age is its id's time against Redis' clock: finished entries are
    deleted, so the oldest left is the oldest message not yet answered.
    """
    async with client.pipeline(transaction=False) as pipe:
        pipe.time()
        for partition in range(keys.partitions):
            stream = keys.stream(partition)
            pipe.xlen(stream)
            pipe.xpending(stream, GROUP)
            pipe.xrange(stream, count=1)
        replies = await pipe.execute(raise_on_error=False)
    seconds, micros = replies[0]
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    result = []
    for partition in range(keys.partitions):
        length, pending, first = replies[1 + 3 * partition : 4 + 3 * partition]
        for reply in (length, first):
            if isinstance(reply, Exception):
                raise reply
        if isinstance(pending, ResponseError) and "NOGROUP" in str(pending):
            pending = {"pending": 0}
        elif isinstance(pending, Exception):
            raise pending
        age = None
        if first:
            age = max(0.0, (now_ms - _id_ms(first[0][0])) / 1000)
        result.append(
            PartitionBacklog(
                partition=partition,
                length=int(length),
                pending=int(pending["pending"]),
                oldest_age_seconds=age,
            )
        )
    return result


async def inspect(client: Redis, keys: Keyspace) -> StateCounts:
    """Count our keys by kind (one SCAN), plus queues, dead letters, members and leases."""
    counts: dict[str, int] = defaultdict(int)
    async for raw in client.scan_iter(match=keys.partition_keys, count=_SCAN_COUNT):
        where = keys.split(_s(raw))
        if where is not None:
            counts[where[1]] += 1
    queues = await backlog(client, keys)
    async with client.pipeline(transaction=False) as pipe:
        pipe.time()
        for partition in range(keys.partitions):
            pipe.xlen(keys.dead_letters(partition))
            pipe.get(keys.lease(partition))
        replies = await pipe.execute()
    seconds, _ = replies[0]
    members = await client.zrangebyscore(keys.members, int(seconds) * 1000, "+inf")
    leases = {
        p: _s(replies[2 + 2 * p]) for p in range(keys.partitions) if replies[2 + 2 * p] is not None
    }
    return StateCounts(
        seen=counts["seen"],
        done=counts["done"],
        answers=counts["out"],
        conversations=counts["conv"],
        dead_letters=sum(int(replies[1 + 2 * p]) for p in range(keys.partitions)),
        pending={q.partition: q.pending for q in queues if q.pending},
        queued={q.partition: q.length for q in queues if q.length},
        members=sorted(_s(m) for m in members),
        leases=leases,
    )


async def backup(client: Redis, keys: Keyspace, path: Path) -> BackupSummary:
    """Write our partition keys to ``path`` (JSON lines); see :meth:`RedisStore.backup`."""
    # Taken before the SCAN: a partition whose stream is unchanged when it is dumped had no
    # intake and no finish meanwhile, so the SCAN saw every key it has (see
    # _consistent_partition).
    marks = await _stream_marks(client, keys)
    by_partition: dict[int, list[str]] = defaultdict(list)
    async for raw in client.scan_iter(match=keys.partition_keys, count=_SCAN_COUNT):
        key = _s(raw)
        where = keys.split(key)
        if where is not None and where[1] not in _NOT_BACKED_UP:
            by_partition[where[0]].append(key)
    version = _s((await client.info("server")).get("redis_version", ""))
    header = {
        "format": BACKUP_FORMAT,
        "version": BACKUP_VERSION,
        "prefix": keys.prefix,
        "partitions": keys.partitions,
        "created_at": datetime.now(UTC).isoformat(),
        "redis_version": version,
    }
    target = anyio.Path(path)
    partial = target.with_name(f".{target.name}.partial")
    written = dumped = 0
    size = 0
    try:
        output = await anyio.open_file(partial, "w", encoding="utf-8", opener=_private_file)
    except OSError as exc:
        raise RedisConfigError(f"cannot write the backup {path}: {exc.strerror or exc}") from None
    async with output:
        size += await output.write(json.dumps(header) + "\n")
        for partition in range(keys.partitions):
            lines = await _consistent_partition(
                client, keys, partition, by_partition.get(partition, []), marks[partition]
            )
            if lines:  # one write per partition: each write is a hop to a worker thread
                size += await output.write("".join(f"{line}\n" for line in lines))
                written += len(lines)
                dumped += 1
        await output.flush()
        await anyio.to_thread.run_sync(os.fsync, output.wrapped.fileno())
    await partial.rename(target)
    return BackupSummary(keys=written, partitions=dumped, bytes=size)


async def _consistent_partition(
    client: Redis, keys: Keyspace, partition: int, names: list[str], mark: _Mark
) -> list[str]:
    """Backup lines of one partition that agree with each other, as of one moment.

    A MULTI/EXEC reads the keys a SCAN listed, but keys created after the SCAN passed are
    not in the list: a message taken in and answered meanwhile would leave its turns in
    the conversation and miss its ``seen`` marker, so a restored store would answer it
    again. Every script that creates partition keys (intake, finish, dead-lettering)
    changes the stream's length or last id, so an unchanged stream means the list was
    complete. Otherwise the partition is listed and read again (a partition's own SCAN),
    and after a few busy tries read in one script, which lists and dumps its keys in one
    atomic step (it blocks Redis for one pass over the keyspace).
    """
    for _ in range(_OPTIMISTIC_TRIES):
        lines, now = await _dump_partition(client, keys, partition, names)
        if now == mark:
            return lines
        mark = (await _stream_marks(client, keys, [partition]))[partition]
        names = [
            _s(raw)
            async for raw in client.scan_iter(match=f"{keys.tag(partition)}:*", count=_SCAN_COUNT)
        ]
        names = [name for name in names if _kind(keys, name) not in _NOT_BACKED_UP]
    script = client.register_script(_DUMP_PARTITION)
    reply = await script(
        args=[f"{keys.tag(partition)}:*", keys.lease(partition), keys.epoch(partition)]
    )
    now_ms = int(reply[0]) * 1000 + int(reply[1]) // 1000
    lines = []
    for i in range(2, len(reply), 3):
        key, value, ttl = _s(reply[i]), reply[i + 1], int(reply[i + 2])
        line = _line(keys, key, value, ttl, now_ms)
        if line is not None:
            lines.append(line)
    return lines


async def _dump_partition(
    client: Redis, keys: Keyspace, partition: int, names: Sequence[str]
) -> tuple[list[str], _Mark]:
    """One MULTI/EXEC reading the given keys of a partition, and its stream's mark."""
    async with client.pipeline(transaction=True) as pipe:
        pipe.time()
        for key in names:
            if _kind(keys, key) == "epoch":
                pipe.get(key)
            else:
                pipe.dump(key)
            pipe.pttl(key)
        pipe.xinfo_stream(keys.stream(partition))
        replies = await pipe.execute(raise_on_error=False)
    for reply in replies[:-1]:
        if isinstance(reply, Exception):
            raise reply
    seconds, micros = replies[0]
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    lines = []
    for i, key in enumerate(names):
        line = _line(keys, key, replies[1 + 2 * i], int(replies[2 + 2 * i]), now_ms)
        if line is not None:
            lines.append(line)
    return lines, _mark(replies[-1])


def _line(keys: Keyspace, key: str, value: Any, ttl: int, now_ms: int) -> str | None:
    """The backup line of one key, or ``None`` when it was gone by the time it was read."""
    if value is None or value is False or ttl == -2:
        return None
    record: dict[str, Any] = {"key": key, "expire_at_ms": now_ms + ttl if ttl >= 0 else None}
    if _kind(keys, key) == "epoch":
        record["counter"] = int(value)
    else:
        record["dump"] = base64.b64encode(value).decode("ascii")
    return json.dumps(record, ensure_ascii=False)


async def _stream_marks(
    client: Redis, keys: Keyspace, partitions: Sequence[int] | None = None
) -> dict[int, _Mark]:
    """The mark (length, last id) of each partition's stream; ``None`` where there is none."""
    chosen = range(keys.partitions) if partitions is None else partitions
    async with client.pipeline(transaction=False) as pipe:
        for partition in chosen:
            pipe.xinfo_stream(keys.stream(partition))
        replies = await pipe.execute(raise_on_error=False)
    return {partition: _mark(reply) for partition, reply in zip(chosen, replies, strict=True)}


def _mark(reply: Any) -> _Mark:
    if isinstance(reply, ResponseError) and "no such key" in str(reply).lower():
        return None
    if isinstance(reply, Exception):
        raise reply
    return int(reply["length"]), _s(reply["last-generated-id"])


async def restore(store: RedisStore, path: Path, *, replace: bool) -> RestoreSummary:
    """Load a backup into the store's Redis; see :meth:`RedisStore.restore`."""
    client = store._client
    keys = store.keys
    restored = kept = expired = 0
    streams: list[str] = []
    seconds, micros = await client.time()
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    header: _BackupHeader | None = None
    batch: list[_BackupRecord] = []
    await client.script_load(store._max_epoch.script)  # used in pipelines below

    async def _flush() -> None:
        nonlocal restored, kept
        if not batch:
            return
        async with client.pipeline(transaction=False) as pipe:
            for record in batch:
                if record.counter is not None:
                    pipe.evalsha(store._max_epoch.sha, 1, record.key, record.counter)
                else:
                    args: list[Any] = [
                        "RESTORE",
                        record.key,
                        record.expire_at_ms or 0,
                        base64.b64decode(record.dump or ""),
                    ]
                    if record.expire_at_ms is not None:
                        args.append("ABSTTL")
                    if replace:
                        args.append("REPLACE")
                    pipe.execute_command(*args)
            replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, ResponseError) and "BUSYKEY" in str(reply):
                kept += 1
            elif isinstance(reply, ResponseError) and "payload version" in str(reply):
                raise RedisConfigError(
                    f"the backup {path} was taken from a newer Redis "
                    f"({header.redis_version if header else '?'}) than this one: restore it "
                    "into the same Redis version or a later one"
                )
            elif isinstance(reply, Exception):
                raise reply
            else:
                restored += 1
        batch.clear()

    try:
        source = await anyio.open_file(path, encoding="utf-8")
    except OSError as exc:
        raise RedisConfigError(f"cannot read the backup {path}: {exc.strerror or exc}") from None
    async with source:
        number = 0
        async for line in _lines(source):
            number += 1
            if not line.strip():
                continue
            try:
                if header is None:
                    header = _BackupHeader.model_validate_json(line)
                    _check_header(header, keys, path)
                    continue
                record = _BackupRecord.model_validate_json(line)
            except ValidationError:
                raise RedisConfigError(
                    f"{path} line {number} is not a larkbot Redis backup line: "
                    "restore a file written by 'larkbot state backup'"
                ) from None
            if header.prefix != keys.prefix:
                record.key = keys.prefix + record.key[len(header.prefix) :]
            where = keys.split(record.key)
            if where is None or where[0] >= keys.partitions:
                raise RedisConfigError(f"{path} line {number} holds a key that is not ours")
            if record.expire_at_ms is not None and record.expire_at_ms <= now_ms:
                expired += 1
                continue
            if where[1] == "in":
                streams.append(record.key)
            batch.append(record)
            if len(batch) >= _BATCH:
                await _flush()
        await _flush()
    if header is None:
        raise RedisConfigError(f"{path} is empty: it is not a larkbot Redis backup")
    marked = 0
    for stream in streams:
        marked += await _mark_seen(store, stream)
    return RestoreSummary(restored=restored, kept=kept, expired=expired, marked_seen=marked)


async def _mark_seen(store: RedisStore, stream: str) -> int:
    """Mark every message of a restored stream seen, so re-deliveries are duplicates."""
    client = store._client
    keys = store.keys
    where = keys.split(stream)
    assert where is not None
    marked = 0
    start = "-"
    while True:
        entries = await client.xrange(stream, min=start, count=_BATCH)
        if not entries:
            return marked
        async with client.pipeline(transaction=False) as pipe:
            for _, fields in entries:
                message_id = _s(fields.get(b"id", b""))
                if message_id:
                    pipe.set(keys.seen(where[0], message_id), "1", nx=True, px=store._seen_ttl_ms)
            marked += sum(1 for reply in await pipe.execute() if reply)
        if len(entries) < _BATCH:
            return marked
        start = "(" + _s(entries[-1][0])


async def _lines(source: AsyncFile[str]) -> AsyncIterator[str]:
    """The file's lines, read a megabyte at a time (a thread hop per line would crawl)."""
    rest = ""
    while chunk := await source.read(1 << 20):
        *complete, rest = (rest + chunk).split("\n")
        for line in complete:
            yield line
    if rest:
        yield rest


def _check_header(header: _BackupHeader, keys: Keyspace, path: Path) -> None:
    if header.format != BACKUP_FORMAT or header.version > BACKUP_VERSION:
        raise RedisConfigError(
            f"{path} is not a larkbot Redis backup of a version this larkbot reads "
            f"(format {header.format!r}, version {header.version})"
        )
    if header.partitions != keys.partitions:
        raise RedisConfigError(
            f"{path} holds {header.partitions} partitions and this store has "
            f"{keys.partitions}: restore with the same partition count"
        )


def _kind(keys: Keyspace, key: str) -> str:
    where = keys.split(key)
    return where[1] if where else ""


def _private_file(path: str, flags: int) -> int:
    # Backups hold conversations: readable by the owner only.
    return os.open(path, flags, 0o600)


def _id_ms(entry_id: Any) -> int:
    return int(_s(entry_id).partition("-")[0])


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
