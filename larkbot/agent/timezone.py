"""The workspace time zone: where "tomorrow at 10" and "this month" are placed.

``agent.timezone`` names it; unset, it is the host's zone when ``TZ`` or
``/etc/localtime`` says which, else Asia/Tokyo. Resolving reads the time zone database
from disk: do it before the event loop starts or in a worker thread.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from datetime import tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import anyio
import anyio.to_thread

__all__ = ["FALLBACK_TIMEZONE", "LazyTimezone", "host_timezone_name", "resolve_timezone"]

_FALLBACK_NAME = "Asia/Tokyo"
# Loaded once at import: building a ZoneInfo reads the tz database from disk, which must
# not happen inside the event loop.
FALLBACK_TIMEZONE: tzinfo = ZoneInfo(_FALLBACK_NAME)
"""The zone used when neither the setting nor the host names one."""

_LOCALTIME = Path("/etc/localtime")
_TIMEZONE_FILE = Path("/etc/timezone")
_MARKER = "zoneinfo/"


def _zone(name: str) -> ZoneInfo | None:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def _key(text: str) -> str:
    """An IANA key from what ``TZ`` or a symlink holds (``:Asia/Tokyo``, ``…/zoneinfo/UTC``)."""
    text = text.strip().removeprefix(":")
    if _MARKER in text:
        text = text.rsplit(_MARKER, 1)[1]
    return text


def host_timezone_name(
    env: Mapping[str, str] | None = None,
    *,
    localtime: Path = _LOCALTIME,
    timezone_file: Path = _TIMEZONE_FILE,
) -> str | None:
    """The IANA name of the host's zone, or ``None`` when the host does not say.

    Looks at ``TZ`` (``Asia/Tokyo``, ``:Asia/Tokyo`` or a path into a zoneinfo folder;
    POSIX rules such as ``JST-9`` name no IANA zone and are skipped), then where
    ``/etc/localtime`` links to, then Debian's ``/etc/timezone``.
    """
    env = os.environ if env is None else env
    candidates: list[str] = []
    if tz := env.get("TZ", "").strip():
        candidates.append(_key(tz))
    # A copied /etc/localtime (not a link) names no zone; either file may be absent.
    with contextlib.suppress(OSError):
        candidates.append(_key(str(localtime.readlink())))
    with contextlib.suppress(OSError, UnicodeDecodeError):
        candidates.append(_key(timezone_file.read_text(encoding="utf-8")))
    return next((name for name in candidates if name and _zone(name) is not None), None)


def resolve_timezone(
    name: str | None,
    env: Mapping[str, str] | None = None,
    *,
    localtime: Path = _LOCALTIME,
    timezone_file: Path = _TIMEZONE_FILE,
) -> tzinfo:
    """The zone ``agent.timezone`` stands for: ``name``, else the host's, else Asia/Tokyo.

    ``name`` has been validated with the settings; ``env`` and the two paths are where
    the host's zone is looked up (see :func:`host_timezone_name`).
    """
    if name:
        zone = _zone(name)
        if zone is None:
            raise ValueError(f"unknown time zone {name!r}")
        return zone
    host = host_timezone_name(env, localtime=localtime, timezone_file=timezone_file)
    return (_zone(host) if host else None) or FALLBACK_TIMEZONE


class LazyTimezone:
    """The zone ``agent.timezone`` stands for, resolved in a worker thread on first use.

    :param name: the ``agent.timezone`` setting.
    :param known: the zone, when the caller already has it (nothing is resolved then).
    """

    def __init__(self, name: str | None, known: tzinfo | None = None) -> None:
        """Resolve ``name`` when first asked, unless ``known`` is given."""
        self._name = name
        self._zone = known
        self._lock = anyio.Lock()

    async def get(self) -> tzinfo:
        """The zone, resolving it now if nothing has yet."""
        if self._zone is None:
            # One lookup however many first requests arrive together: a thread each would
            # compete with the event loop just when acks are due.
            async with self._lock:
                if self._zone is None:
                    self._zone = await anyio.to_thread.run_sync(resolve_timezone, self._name)
        return self._zone
