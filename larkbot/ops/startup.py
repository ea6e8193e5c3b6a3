"""The start-up line: what is running, as whom, against which Lark, keeping state where."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from larkbot.ops.metrics import build_versions

if TYPE_CHECKING:
    from larkbot.config import Settings

__all__ = ["log_startup_banner", "startup_banner"]

_log = logging.getLogger("larkbot.ops")


def startup_banner(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """One sentence naming the version, the app, the Lark domain, the store and the config.

    ``env`` decides the state folder as the daemon does (``os.environ`` by default).
    """
    versions = build_versions()
    store = settings.store
    if store.kind == "sqlite":
        where = f"SQLite in {store.resolved_state_dir(os.environ if env is None else env)}"
    elif store.kind == "redis":
        # The URL can carry a password: the prefix and partitions say which deployment.
        where = f"in Redis (prefix {store.redis_prefix}, {store.partitions} partitions)"
    else:
        where = "in memory (restarts forget which messages were answered)"
    server = settings.server
    config = settings.config_file or "none"
    return (
        f"larkbot {versions['version']} (Python {versions['python']}, lark-oapi "
        f"{versions['lark_oapi']}) starting: app {settings.app.id} on "
        f"{settings.lark.base_url}, state {where}, ops port {server.host}:{server.port}, "
        f"config file {config}"
    )


def log_startup_banner(settings: Settings, env: Mapping[str, str] | None = None) -> None:
    """Log :func:`startup_banner` at INFO, as the first line of a run."""
    _log.info("%s", startup_banner(settings, env))
