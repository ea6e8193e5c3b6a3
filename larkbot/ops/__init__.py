"""Operations beside the event path: health and metrics port, systemd notify, logging, Sentry.

The names below load their module on first use, so that importing ``larkbot.ops.metrics``
(which every stage does) does not also import uvicorn, Starlette and the Sentry SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from larkbot.core._lazy import lazy_exports

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
    "HealthState": "larkbot.ops.http",
    "OpsPortError": "larkbot.ops.http",
    "OpsServer": "larkbot.ops.http",
    "build_ops_app": "larkbot.ops.http",
    "SystemdNotifier": "larkbot.ops.systemd",
    "add_secrets": "larkbot.ops.logging",
    "log_context": "larkbot.ops.logging",
    "redact": "larkbot.ops.logging",
    "setup_logging": "larkbot.ops.logging",
    "init_sentry": "larkbot.ops.sentry",
}


__getattr__ = lazy_exports(__name__, _HOME)
