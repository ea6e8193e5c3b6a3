"""Durable state beside the event path: the seen-message ledger and the inbox.

``open_store`` is the one way in::

    async with open_store("sqlite", state_dir) as store:
        if await store.admit(message):   # before the ack
            ...

``kind="sqlite"`` keeps everything in ``<state_dir>/larkbot.sqlite3`` and survives
restarts and crashes; ``kind="memory"`` is for tests and forgets on restart.
``backup_sqlite``, ``restore_sqlite`` and ``inspect_sqlite`` are ``larkbot state`` for the
SQLite state; the Redis store has the same operations as methods.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from larkbot.store._sqlite_admin import (
    SqliteBackupSummary,
    SqliteInventory,
    SqliteRestoreSummary,
    backup_sqlite,
    inspect_sqlite,
    restore_sqlite,
)
from larkbot.store.inbox import InboxStatus, StoredMessage
from larkbot.store.ledger import Store, StoreError
from larkbot.store.memory import MemoryStore
from larkbot.store.sqlite import SqliteStore

__all__ = [
    "InboxStatus",
    "SqliteBackupSummary",
    "SqliteInventory",
    "SqliteRestoreSummary",
    "Store",
    "StoreError",
    "StoredMessage",
    "backup_sqlite",
    "inspect_sqlite",
    "open_store",
    "restore_sqlite",
]

logger = logging.getLogger("larkbot.store")


@asynccontextmanager
async def open_store(
    kind: str = "sqlite",
    state_dir: Path | None = None,
    *,
    ledger_ttl_seconds: float = 86400,
    ledger_max_entries: int = 1_000_000,
    prune_interval: float = 300.0,
) -> AsyncIterator[Store]:
    """Open the store of ``kind`` (``"sqlite"`` or ``"memory"``) and close it on exit.

    ``state_dir`` is where the SQLite database lives (created with mode 0700 if missing);
    the memory store ignores it. Raises :class:`StoreError` with one sentence for the
    operator when the store cannot be opened.
    """
    if kind == "memory":
        logger.warning("store = memory: restarts forget which messages were answered")
        yield MemoryStore(
            ledger_ttl_seconds=ledger_ttl_seconds,
            ledger_max_entries=ledger_max_entries,
            prune_interval=prune_interval,
        )
    elif kind == "sqlite":
        if state_dir is None:
            raise StoreError(
                "store = sqlite needs a state directory: set LARKBOT_STATE_DIR to a "
                "writable directory"
            )
        async with SqliteStore.open(
            state_dir,
            ledger_ttl_seconds=ledger_ttl_seconds,
            ledger_max_entries=ledger_max_entries,
            prune_interval=prune_interval,
        ) as store:
            yield store
    else:
        raise StoreError(f"store = {kind!r} is not a store kind: use 'sqlite' or 'memory'")
