"""Error reporting to Sentry, with every secret scrubbed before anything leaves the process."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import sentry_sdk
from sentry_sdk.integrations.logging import LoggingIntegration
from sentry_sdk.transport import Transport

try:  # private helper of the SDK, hence guarded; see _prime_installed_modules
    from sentry_sdk.utils import _get_installed_modules
except ImportError:  # pragma: no cover - a future SDK without it simply reads later
    _get_installed_modules = None

from larkbot.core.redact import add_secrets, redact

__all__ = ["init_sentry"]

_log = logging.getLogger("larkbot.ops")


def init_sentry(
    *,
    dsn: str | None,
    environment: str,
    release: str,
    secrets: Sequence[str],
    transport: type[Transport] | Transport | None = None,
    traces_sample_rate: float = 0.0,
) -> bool:
    """Start reporting errors to ``dsn``; return ``False`` and do nothing when it is empty.

    ERROR log records become events and INFO records become breadcrumbs. Each event,
    transaction and breadcrumb passes through ``redact`` (so ``secrets``, every secret
    registered later with ``add_secrets``, and anything shaped like a token are masked).
    Call it before the event loop starts: the SDK reads files while it sets up.
    """
    if not dsn:
        return False
    add_secrets(*secrets)
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        release=release,
        transport=transport,
        traces_sample_rate=traces_sample_rate,
        integrations=[LoggingIntegration(level=logging.INFO, event_level=logging.ERROR)],
        before_send=_scrub_event,
        before_send_transaction=_scrub_event,
        before_breadcrumb=_scrub_breadcrumb,
    )
    _prime_installed_modules()
    _log.info("error reports go to Sentry (environment %s, release %s)", environment, release)
    return True


def _scrub_event(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Redact every string of an (already serialized) event: message, exceptions, frames..."""
    return _scrub(event)


def _scrub_breadcrumb(crumb: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """Redact every string of a breadcrumb before it joins the scope."""
    return _scrub(crumb)


def _scrub(value: Any) -> Any:
    """Return ``value`` with ``redact`` applied to every string inside it."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(item) for item in value)
    return value


def _prime_installed_modules() -> None:
    """Read the installed-package list now, not on the event loop at the first error.

    The modules integration lists installed distributions (hundreds of metadata files) the
    first time an event is sent, and caches the answer.
    """
    if _get_installed_modules is not None:
        _get_installed_modules()
