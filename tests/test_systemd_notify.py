"""systemd notify over a real unix datagram socket standing in for systemd."""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from anyio.abc import UNIXDatagramSocket

from larkbot.ops.systemd import SystemdNotifier

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def _systemd(address: str) -> AsyncIterator[UNIXDatagramSocket]:
    """Listen where systemd would, at ``address`` (a path or an abstract ``\\0name``)."""
    async with await anyio.create_unix_datagram_socket(local_path=address) as sock:
        yield sock


async def _next_datagram(sock: UNIXDatagramSocket, timeout: float = 2) -> bytes:  # noqa: ASYNC109
    with anyio.fail_after(timeout):
        data, _ = await sock.receive()
    return data


async def test_ready_status_and_stopping_reach_a_path_socket(tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    async with _systemd(address) as systemd:
        notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": address})
        assert notifier.enabled
        assert notifier.watchdog_interval is None

        await notifier.ready("connected as bot ou_1")
        assert await _next_datagram(systemd) == b"READY=1\nSTATUS=connected as bot ou_1"
        await notifier.status("reconnecting\nattempt 2")
        assert await _next_datagram(systemd) == b"STATUS=reconnecting attempt 2"
        await notifier.stopping()
        assert await _next_datagram(systemd) == b"STOPPING=1\nSTATUS=stopping"
        await notifier.notify(EXTEND_TIMEOUT_USEC=5_000_000)
        assert await _next_datagram(systemd) == b"EXTEND_TIMEOUT_USEC=5000000"


async def test_abstract_namespace_socket() -> None:
    name = f"larkbot-test-{uuid.uuid4().hex}"
    async with _systemd("\0" + name) as systemd:
        notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier.enabled
        await notifier.ready("up")
        assert await _next_datagram(systemd) == b"READY=1\nSTATUS=up"


async def test_run_watchdog_pings_every_half_interval(tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    env = {
        "NOTIFY_SOCKET": address,
        "WATCHDOG_USEC": "2000000",
        "WATCHDOG_PID": str(os.getpid()),
    }
    async with _systemd(address) as systemd:
        notifier = SystemdNotifier.from_env(env)
        assert notifier.watchdog_interval == pytest.approx(2.0)
        arrivals: list[float] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(notifier.run_watchdog)
            for _ in range(3):
                assert await _next_datagram(systemd, timeout=5) == b"WATCHDOG=1"
                arrivals.append(anyio.current_time())
            tg.cancel_scope.cancel()
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    print(f"\nwatchdog pings {', '.join(f'{gap:.2f}' for gap in gaps)} s apart (interval 2 s)")
    # A ping every half interval (1 s): never much sooner, and always before systemd's 2 s
    # would run out, which a ping once per interval would not be.
    assert all(0.75 <= gap < 2.0 for gap in gaps), gaps


async def test_watchdog_without_pid_is_kept(tmp_path: Path) -> None:
    notifier = SystemdNotifier.from_env(
        {"NOTIFY_SOCKET": str(tmp_path / "n.sock"), "WATCHDOG_USEC": "3000000"}
    )
    assert notifier.watchdog_interval == pytest.approx(3.0)


async def test_watchdog_pid_of_another_process_disables_the_watchdog(tmp_path: Path) -> None:
    address = str(tmp_path / "notify.sock")
    env = {"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": "1"}
    async with _systemd(address) as systemd:
        notifier = SystemdNotifier.from_env(env)
        assert notifier.enabled
        assert notifier.watchdog_interval is None
        with anyio.fail_after(1):
            await notifier.run_watchdog()  # returns at once
        # Still a notifier for everything else.
        await notifier.status("fine")
        assert await _next_datagram(systemd) == b"STATUS=fine"


async def test_disabled_without_notify_socket() -> None:
    notifier = SystemdNotifier.from_env({"WATCHDOG_USEC": "200000"})
    assert not notifier.enabled
    assert notifier.watchdog_interval is None
    with anyio.fail_after(1):
        await notifier.ready("up")
        await notifier.watchdog()
        await notifier.stopping()
        await notifier.run_watchdog()


async def test_unsupported_socket_kind_disables(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="larkbot.ops"):
        notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled
    assert "not a unix socket path" in caplog.text


async def test_send_failure_is_logged_once_and_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    with caplog.at_level(logging.WARNING, logger="larkbot.ops"), anyio.fail_after(2):
        await notifier.ready("up")
        await notifier.watchdog()
        await notifier.stopping()
    warnings = [r for r in caplog.records if r.name == "larkbot.ops"]
    assert len(warnings) == 1
    assert "cannot notify systemd" in warnings[0].getMessage()
