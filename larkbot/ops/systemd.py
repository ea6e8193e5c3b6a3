"""The systemd notify protocol (``Type=notify``, ``WatchdogSec=``), spoken from the event loop.

Written here rather than taken from PyPI: the packages for it are unmaintained, and the
protocol is one datagram of ``KEY=value`` lines to the socket named by ``NOTIFY_SOCKET``
(see sd_notify(3)). Sending from the event loop itself is deliberate for the watchdog: a
loop that stops turning stops the pings, and systemd restarts the service.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import anyio

__all__ = ["SystemdNotifier"]

_log = logging.getLogger("larkbot.ops")

# systemd reads its socket at once; a send that waits longer means it is not listening.
_SEND_TIMEOUT = 1.0


class SystemdNotifier:
    """Tells systemd about readiness, status, shutdown and liveness; inert outside systemd."""

    def __init__(self, address: str | None, watchdog_interval: float | None = None) -> None:
        """Notify the socket at ``address`` (``None`` disables every method).

        ``address`` is a filesystem path or an abstract socket name starting with ``\\0``;
        ``watchdog_interval`` is systemd's watchdog timeout in seconds.
        """
        self._address = address
        self.enabled: bool = address is not None
        self.watchdog_interval: float | None = watchdog_interval if self.enabled else None
        self._warned = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> SystemdNotifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` as systemd sets them."""
        raw = env.get("NOTIFY_SOCKET", "")
        if not raw:
            return cls(None)
        if raw.startswith("@"):
            address = "\0" + raw[1:]
        elif raw.startswith("/"):
            address = raw
        else:
            # vsock: and other transports exist for VMs; a daemon in a unit never gets them.
            _log.warning("NOTIFY_SOCKET=%s is not a unix socket path: systemd notify is off", raw)
            return cls(None)
        return cls(address, _watchdog_interval(env))

    async def notify(self, **fields: str | int) -> None:
        """Send ``KEY=value`` fields in one datagram, e.g. ``notify(READY=1, STATUS="up")``."""
        if not self.enabled or not fields:
            return
        # A newline inside a value would start a bogus field of its own.
        lines = (f"{key}={str(value).replace(chr(10), ' ')}" for key, value in fields.items())
        await self._send("\n".join(lines).encode())

    async def ready(self, status: str) -> None:
        """Report start-up complete (systemd now considers the unit active)."""
        await self.notify(READY=1, STATUS=status)

    async def status(self, text: str) -> None:
        """Show ``text`` in ``systemctl status``."""
        await self.notify(STATUS=text)

    async def stopping(self) -> None:
        """Report that a graceful shutdown has begun."""
        await self.notify(STOPPING=1, STATUS="stopping")

    async def watchdog(self) -> None:
        """Send one liveness ping."""
        await self.notify(WATCHDOG=1)

    async def run_watchdog(self) -> None:
        """Ping every half watchdog interval until cancelled; return at once if not asked to."""
        if not self.enabled or self.watchdog_interval is None:
            return
        period = self.watchdog_interval / 2
        while True:
            await self.watchdog()
            await anyio.sleep(period)

    async def _send(self, datagram: bytes) -> None:
        """Deliver one datagram; failures are reported once and never raised."""
        assert self._address is not None
        try:
            # A fresh socket per message, as sd_notify does: nothing to keep open or close,
            # and a restarted systemd is picked up without reconnect logic.
            with anyio.fail_after(_SEND_TIMEOUT):
                address = self._address
                async with await anyio.create_connected_unix_datagram_socket(address) as sock:
                    await sock.send(datagram)
        except (OSError, anyio.BrokenResourceError) as exc:  # TimeoutError is an OSError
            if not self._warned:
                self._warned = True
                _log.warning(
                    "cannot notify systemd at %r: %s", self._address, str(exc) or "timed out"
                )


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Return the watchdog timeout in seconds if systemd asked *this* process for pings."""
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    try:
        interval = int(usec) / 1_000_000
        # WATCHDOG_PID names the main process; a child that inherited the environment must
        # not ping on its behalf.
        if pid and int(pid) != os.getpid():
            return None
    except ValueError:
        return None
    return interval if interval > 0 else None
