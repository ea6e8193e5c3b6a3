"""``larkbot state backup | restore | inspect``: the state of whichever store is configured.

SQLite (the default): the database in the state directory, copied with SQLite's online
backup API while the daemon runs; restored into a state directory no daemon has open.
Redis: this deployment's keys (its prefix) only, via :class:`RedisStore`'s backup, restore
and inventory. Output is plain text (one fact a line, no colour, safe to pipe) or, with
``--json``, one JSON document. Errors are one sentence on standard error: exit 78 when the
configuration or a file is wrong, 1 when Redis cannot be reached.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Literal, NoReturn, TypeVar

import anyio
import typer
from pydantic import BaseModel, ConfigDict

from larkbot.cli._errors import EX_CONFIG, fail, leaf_exceptions
from larkbot.cli._redis import redis_store
from larkbot.config import Settings
from larkbot.core.errors import LarkbotError
from larkbot.store import StoreError, backup_sqlite, inspect_sqlite, restore_sqlite
from larkbot.store.redis import BackupSummary

__all__ = ["StateInventory", "backup_state", "inspect_state", "restore_state"]

T = TypeVar("T")

_SQLITE_MAGIC = b"SQLite format 3\x00"
# A backup must not wait behind a slow Redis forever, nor fail on a large keyspace.
_REDIS_COMMAND_TIMEOUT = 10.0


class StateInventory(BaseModel):
    """What ``larkbot state inspect`` reports, for either store.

    :ivar pending: messages acknowledged to Lark and not yet answered.
    :ivar pending_by_partition: the same per partition (Redis only; partitions with none
        are left out).
    :ivar in_progress: pending messages a replica has taken up (Redis only).
    :ivar failed: inbox items whose reply finally failed (SQLite), or dead letters (Redis).
    :ivar conversations: conversations kept (Redis); ``None`` for SQLite, whose daemon
        keeps conversations in memory.
    :ivar processes: pids (SQLite) or replica ids (Redis) that have the state open now.
    """

    model_config = ConfigDict(frozen=True)

    store: Literal["sqlite", "redis"]
    location: str
    seen: int
    pending: int
    pending_by_partition: dict[int, int] | None = None
    in_progress: int | None = None
    oldest_pending_age_seconds: float | None = None
    done: int
    failed: int
    expired: int | None = None
    conversations: int | None = None
    answers_cached: int | None = None
    processes: list[str]


def inspect_state(settings: Settings, *, as_json: bool) -> None:
    """Print what the configured store holds."""
    inventory = _run(lambda: _inventory(settings))
    if as_json:
        typer.echo(inventory.model_dump_json(indent=2))
        return
    for line in _inventory_lines(inventory):
        typer.echo(line)


def backup_state(settings: Settings, target: Path, *, as_json: bool) -> None:
    """Write a backup of the configured store to ``target`` and say what it holds."""
    kind = _kind(settings)
    if kind == "sqlite":
        state_dir = settings.store.resolved_state_dir()
        summary = _run(lambda: backup_sqlite(state_dir, target))
        held = summary.inventory
        items = held.pending + held.done + held.failed + held.expired
        document: dict[str, object] = {"store": "sqlite", **summary.model_dump()}
        line = (
            f"backed up {held.seen} seen message ids and {items} inbox items "
            f"({held.pending} pending) from {state_dir} to {summary.path} "
            f"({_size(summary.bytes)}, {summary.seconds:.1f} s)"
        )
    else:

        async def _redis_backup() -> tuple[str, BackupSummary]:
            async with redis_store(settings, command_timeout=_REDIS_COMMAND_TIMEOUT) as store:
                await store.verify_layout()
                return str(store.endpoint), await store.backup(target)

        where, written = _run(_redis_backup)
        written_bytes = written.bytes
        figures = written.model_dump()
        document = {"store": "redis", "path": str(target), "location": where, **figures}
        line = (
            f"backed up {figures['keys']} keys of {figures['partitions']} partitions "
            f"(prefix {settings.store.redis_prefix}) from {where} to {target} "
            f"({_size(written_bytes)})"
        )
    typer.echo(json.dumps(document, indent=2) if as_json else line)


def restore_state(
    settings: Settings, source: Path, *, replace: bool, force: bool, as_json: bool
) -> None:
    """Load a backup into the configured store and say what changed."""
    kind = _kind(settings)
    head = _run(lambda: _head(source))
    if kind == "sqlite":
        state_dir = settings.store.resolved_state_dir()
        summary = _run(lambda: restore_sqlite(state_dir, source, replace=replace, force=force))
        document: dict[str, object] = {"store": "sqlite", "location": str(state_dir)}
        document.update(summary.model_dump())
        line = (
            f"restored {summary.seen_added} seen message ids and {summary.inbox_added} inbox "
            f"items into {state_dir}"
            + (" (replacing what was there)" if replace else f"; {summary.inbox_kept} kept")
            + f"; {summary.pending_to_resume} pending item(s) will be answered at the next start"
        )
    else:
        if head.startswith(_SQLITE_MAGIC):
            _refuse(
                f"{source} is a backup of the SQLite store and this larkbot uses Redis: "
                "set LARKBOT_STORE=sqlite to restore it into a state directory"
            )

        async def _redis_restore() -> tuple[str, dict[str, object]]:
            async with redis_store(settings, command_timeout=_REDIS_COMMAND_TIMEOUT) as store:
                # A Redis holding another partition count would mix two layouts.
                await store.verify_layout()
                if not force:
                    members = (await store.inspect()).members
                    if members:
                        raise StoreError(
                            f"{len(members)} larkbot replica(s) are running on Redis at "
                            f"{store.endpoint} ({', '.join(members[:3])}): stop them first, "
                            "or pass --force to restore under them"
                        )
                done = await store.restore(source, replace=replace)
                return str(store.endpoint), done.model_dump()

        where, figures = _run(_redis_restore)
        document = {"store": "redis", "location": where, **figures}
        line = (
            f"restored {figures['restored']} keys into {where} "
            f"(prefix {settings.store.redis_prefix}); {figures['kept']} already there and "
            f"kept, {figures['expired']} expired and skipped; {figures['marked_seen']} "
            "queued message(s) marked seen"
        )
    typer.echo(json.dumps(document, indent=2) if as_json else line)


def _refuse(sentence: str) -> NoReturn:
    """Stop with one sentence and exit status 78 (a file or setting the operator must fix)."""
    fail(sentence if sentence.endswith(".") else f"{sentence}.", EX_CONFIG)


async def _inventory(settings: Settings) -> StateInventory:
    if _kind(settings) == "sqlite":
        counts = await inspect_sqlite(settings.store.resolved_state_dir())
        return StateInventory(
            store="sqlite",
            location=counts.path,
            seen=counts.seen,
            pending=counts.pending,
            oldest_pending_age_seconds=counts.oldest_pending_age_seconds,
            done=counts.done,
            failed=counts.failed,
            expired=counts.expired,
            processes=[str(pid) for pid in counts.processes],
        )
    async with redis_store(settings, command_timeout=_REDIS_COMMAND_TIMEOUT) as store:
        # Counted with another partition count, every figure would be wrong.
        await store.verify_layout()
        counts = await store.inspect()
        queues = await store.backlog()
        ages = [q.oldest_age_seconds for q in queues if q.oldest_age_seconds is not None]
        return StateInventory(
            store="redis",
            location=f"{store.endpoint} (prefix {store.keys.prefix}, "
            f"{store.keys.partitions} partitions)",
            seen=counts.seen,
            pending=sum(counts.queued.values()),
            pending_by_partition=dict(sorted(counts.queued.items())),
            in_progress=sum(counts.pending.values()),
            oldest_pending_age_seconds=max(ages, default=None),
            done=counts.done,
            failed=counts.dead_letters,
            conversations=counts.conversations,
            answers_cached=counts.answers,
            processes=counts.members,
        )


def _inventory_lines(inventory: StateInventory) -> list[str]:
    rows: list[tuple[str, str]] = [
        ("store", f"{inventory.store} {inventory.location}"),
        ("seen", f"{inventory.seen}"),
        ("pending", f"{inventory.pending}"),
    ]
    if inventory.oldest_pending_age_seconds is not None:
        rows.append(("oldest pending", f"{inventory.oldest_pending_age_seconds:.1f} s"))
    if inventory.in_progress is not None:
        rows.append(("in progress", f"{inventory.in_progress}"))
    for partition, count in (inventory.pending_by_partition or {}).items():
        rows.append((f"pending p{partition:02d}", f"{count}"))
    rows.append(("done", f"{inventory.done}"))
    rows.append(("failed", f"{inventory.failed}"))
    if inventory.expired is not None:
        rows.append(("expired", f"{inventory.expired}"))
    if inventory.conversations is None:
        rows.append(("conversations", "not stored (kept in the daemon's memory)"))
    else:
        rows.append(("conversations", f"{inventory.conversations}"))
    if inventory.answers_cached is not None:
        rows.append(("answers cached", f"{inventory.answers_cached}"))
    label = "replicas" if inventory.store == "redis" else "processes"
    rows.append((label, " ".join(inventory.processes) or "none"))
    width = max(len(name) for name, _ in rows) + 2
    return [f"{name + ':':<{width}}{value}" for name, value in rows]


def _kind(settings: Settings) -> Literal["sqlite", "redis"]:
    kind = settings.store.kind
    if kind == "memory":
        _refuse(
            "store = memory keeps no state to back up, restore or inspect: set LARKBOT_STORE "
            "to sqlite or redis"
        )
    return "redis" if kind == "redis" else "sqlite"


async def _head(source: Path) -> bytes:
    try:
        async with await anyio.open_file(source, "rb") as file:
            return await file.read(64)
    except OSError as exc:
        raise StoreError(f"cannot read the backup {source}: {exc.strerror or exc}") from None


def _size(count: int) -> str:
    if count < 1000:
        return f"{count} bytes"
    if count < 1_000_000:
        return f"{count / 1000:.1f} kB"
    return f"{count / 1_000_000:.1f} MB"


def _run(call: Callable[[], Awaitable[T]]) -> T:
    """Run ``call`` in a fresh event loop; a :class:`LarkbotError` becomes one line and exit."""
    try:
        return anyio.run(call)
    except BaseException as exc:
        for leaf in leaf_exceptions(exc):
            if isinstance(leaf, LarkbotError):
                fail(f"{leaf}.".replace("..", "."), leaf.exit_code)
            if isinstance(leaf, KeyboardInterrupt):
                raise SystemExit(130) from None
        raise
