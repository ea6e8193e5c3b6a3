"""Operations beside the event path: health and metrics port, systemd notify, logging, Sentry.

The names below load their module on first use, so that importing ``larkbot.ops.metrics``
(which every stage does) does not also import uvicorn, Starlette and the Sentry SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from larkbot.ops.http import HealthState, OpsPortError, OpsServer, build_ops_app
    from larkbot.ops.logging import add_secrets, log_context, redact, setup_logging
    from larkbot.ops.sentry import init_sentry
    from larkbot.ops.systemd import SystemdNotifier

__all__ = [
    "HealthState",
    "OpsPortError",
    "OpsServer",
    "SystemdNotifier",
    "add_secrets",
    "build_ops_app",
    "init_sentry",
    "log_context",
    "redact",
    "setup_logging",
]

_HOME = {
    "HealthState": "http",
    "OpsPortError": "http",
    "OpsServer": "http",
    "build_ops_app": "http",
    "SystemdNotifier": "systemd",
    "add_secrets": "logging",
    "log_context": "logging",
    "redact": "logging",
    "setup_logging": "logging",
    "init_sentry": "sentry",
}


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` when it is first asked for."""
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
